# Two commands a new user needs (see README.md):
#   make demo   - set up, then run the app on the bundled recording (headless: write results to out/)
#   make test   - set up, then run the whole test suite
# Both create or reuse the virtual environment in $(VENV) and install what is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Qt's xcb platform plugin (a desktop with X11) needs the libxcb-* family; Wayland sessions need libwayland-*.
# tests/test_system_libs.py checks with ldd that nothing the plugins link is missing.
QT_XCB_PACKAGES := libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 \
	libxcb-xinerama0 libxcb-xkb1 libxcb-randr0 libx11-xcb1 libxkbcommon-x11-0 libwayland-cursor0 libwayland-egl1
APT_PACKAGES := libusb-1.0-0 libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 $(QT_XCB_PACKAGES)
# Only for `make test`: a virtual X display, so the suite opens the real window on xcb as a desktop would.
TEST_APT_PACKAGES := xvfb xauth
REQ_STAMP := $(VENV)/.requirements-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: demo test setup system-packages bench clean

demo: setup
	$(PY) main.py

# pytest exits 5 when it collects no tests: that is a failure here too (any non-zero fails make).
test: setup
	@$(MAKE) --no-print-directory system-packages APT_PACKAGES="$(TEST_APT_PACKAGES)"
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "No tests were collected." >&2; fi; exit $$rc

bench: setup
	$(PY) main.py bench-speed
	$(PY) main.py bench-accuracy --suite synthetic  # the semi-real suite needs ../shared/data (evaluation-only): main.py bench-accuracy

setup: system-packages $(REQ_STAMP)

# Debian packages the Python wheels need at run time (RealSense: libusb; Qt: GL/EGL/xkbcommon/fontconfig).
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    (apt-get install -y -q $$missing >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)) \
	      || { echo "Could not install$$missing with apt-get; install them and run make again." >&2; exit 1; }; \
	  else \
	    echo "Missing Debian packages:$$missing. Run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

$(REQ_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@# Orbbec SDK without its dependencies (they would pull open3d, numpy<2 and a non-headless OpenCV).
	$(PY) -m pip install -q --no-deps pyorbbecsdk2==2.1.2
	@echo "Compiling pymatting's numba kernels once (about a minute)..."
	$(PY) -c "import pymatting"
	@rm -f $(VENV)/.requirements-*; touch $@

clean:
	rm -rf out .pytest_cache
