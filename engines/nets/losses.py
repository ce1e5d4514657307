"""Training losses: BGMv2 eq. 1-5 and DART's distillation loss (DART eq. 3).

Every function takes (N, C, H, W) float tensors at one resolution and returns a scalar tensor (mean
over all elements unless stated); composite losses return a dict of terms with the sum under "total".
Alpha, error maps and foregrounds are in [0, 1]; the foreground is RGB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel derivatives of each channel, normalised by 1/8 (a ramp of slope s
    per pixel gives s), borders replicated. x: (N, C, H, W) -> two (N, C, H, W) tensors."""
    c = x.shape[1]
    kx = _SOBEL_X.to(dtype=x.dtype, device=x.device)
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(c, 1, 1, 1)  # (2C, 1, 3, 3): [gx, gy] per channel
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
    return g[:, 0::2], g[:, 1::2]


def alpha_loss(pha: torch.Tensor, pha_gt: torch.Tensor) -> torch.Tensor:
    """BGMv2 eq. 1: mean |alpha - alpha*| + mean(|d/dx alpha - d/dx alpha*| + |d/dy alpha - d/dy alpha*|)."""
    gx, gy = sobel(pha)
    tx, ty = sobel(pha_gt)
    return F.l1_loss(pha, pha_gt) + (gx - tx).abs().mean() + (gy - ty).abs().mean()


def foreground_loss(fgr: torch.Tensor, fgr_gt: torch.Tensor, pha_gt: torch.Tensor) -> torch.Tensor:
    """BGMv2 eq. 2: L1 between foregrounds where alpha* > 0 (mean over all elements, masked ones count 0).

    fgr, fgr_gt: (N, 3, H, W) foreground RGB (use `foreground_from_residual` for F from F^R);
    pha_gt: (N, 1, H, W).
    """
    mask = (pha_gt > 0).to(fgr.dtype)
    return ((fgr - fgr_gt).abs() * mask).mean()


def error_target(pha: torch.Tensor, pha_gt: torch.Tensor) -> torch.Tensor:
    """Ground-truth error map E* = |alpha - alpha*|, detached from the prediction (BGMv2 sec. 4.3)."""
    return (pha.detach() - pha_gt).abs()


def error_loss(err: torch.Tensor, pha: torch.Tensor, pha_gt: torch.Tensor) -> torch.Tensor:
    """BGMv2 eq. 3: mean squared error between the predicted error map and |alpha - alpha*| (detached)."""
    return F.mse_loss(err, error_target(pha, pha_gt))


def base_loss(
    pha: torch.Tensor,
    fgr: torch.Tensor,
    err: torch.Tensor,
    pha_gt: torch.Tensor,
    fgr_gt: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """BGMv2 eq. 4 at the base network's resolution: L_alpha + L_F + L_E (ground truth resized by caller)."""
    terms = {
        "alpha": alpha_loss(pha, pha_gt),
        "fgr": foreground_loss(fgr, fgr_gt, pha_gt),
        "err": error_loss(err, pha, pha_gt),
    }
    terms["total"] = terms["alpha"] + terms["fgr"] + terms["err"]
    return terms


def refine_loss(
    pha: torch.Tensor, fgr: torch.Tensor, pha_gt: torch.Tensor, fgr_gt: torch.Tensor
) -> dict[str, torch.Tensor]:
    """BGMv2 eq. 5 at full resolution: L_alpha + L_F."""
    terms = {"alpha": alpha_loss(pha, pha_gt), "fgr": foreground_loss(fgr, fgr_gt, pha_gt)}
    terms["total"] = terms["alpha"] + terms["fgr"]
    return terms


def bernoulli_kl(teacher: torch.Tensor, student: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean over pixels of KL(Bern(t) || Bern(s)) = t log(t/s) + (1-t) log((1-t)/(1-s)).

    Each pixel's alpha is read as a Bernoulli probability. The teacher is detached and used as is
    (0 log 0 = 0); the student is clamped to [eps, 1 - eps] for the value. The gradient is the one
    with respect to the student's logit, (s - t) per pixel (what a sigmoid-output network receives):
    BGMv2's alpha head is a clamp, not a sigmoid, and the gradient with respect to s itself,
    (s - t) / (s (1 - s)), reaches 1e4 on the many near-zero background pixels where the teacher says
    0.01, which swamped the L1 and L2 terms of eq. 3 and left the distilled student at twice the
    plain student's error.
    """
    t = teacher.detach()
    s = student.clamp(eps, 1.0 - eps)
    kl = torch.xlogy(t, t) + torch.xlogy(1.0 - t, 1.0 - t) - t * torch.log(s) - (1.0 - t) * torch.log1p(-s)
    surrogate = 0.5 * (student - t) ** 2  # d/ds = s - t
    return kl.mean().detach() + surrogate.mean() - surrogate.mean().detach()


def distillation_loss(
    pha: torch.Tensor,
    err: torch.Tensor,
    pha_teacher: torch.Tensor,
    pha_gt: torch.Tensor,
    err_gt: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """DART eq. 3: KL(A_raw, A*_raw) + ||A_raw - A_GT||_1 + ||E_RGB - E_GT||_2, unweighted.

    pha: the student's raw alpha A_raw; err: its error map E_RGB; pha_teacher: the teacher's A*_raw;
    pha_gt: A_GT; err_gt: E_GT, by default |A_raw - A_GT| detached (BGMv2's definition). All
    (N, 1, h, w) in [0, 1] at the base network's resolution. The KL is KL(Bern(teacher) || Bern(student))
    per pixel (mean); L1 and L2 are means (the L2 term is a mean squared error, as in BGMv2).
    """
    target = error_target(pha, pha_gt) if err_gt is None else err_gt
    terms = {
        "kl": bernoulli_kl(pha_teacher, pha),
        "alpha_l1": F.l1_loss(pha, pha_gt),
        "err_l2": F.mse_loss(err, target),
    }
    terms["total"] = terms["kl"] + terms["alpha_l1"] + terms["err_l2"]
    return terms
