# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test train clean system-deps gpu

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first (a plain `torch` requirement would pull a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[export,train,dev,triton,serve,openvino,gateway,notify]'
	touch $(STAMP)

venv: $(STAMP)

# the TensorRT extra for this machine's driver: `edgeseg doctor` names it (gpu-cu12 | gpu-cu13 | jetson)
EXTRA ?= gpu-cu12
gpu: $(STAMP)
	$(BIN)/pip install -q -e '.[$(EXTRA)]'

# Real components for the gateway tests (RTSP server, MQTT broker, H.264 encoder, a browser for the status page): installed with
# apt when running as root and missing; never fails the build (those tests then skip with a reason).
GATEWAY_DEBS := mosquitto ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly chromium
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { ! command -v mosquitto >/dev/null 2>&1 \
	    || ! command -v ffmpeg >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1 || ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" \
	    >/dev/null 2>&1; }; then \
	  echo "installing gateway test components: $(GATEWAY_DEBS)"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(GATEWAY_DEBS)) \
	    >/tmp/edgeseg-system-deps.log 2>&1 || echo "apt-get failed (see /tmp/edgeseg-system-deps.log); gateway tests needing them will skip"; \
	fi

test: $(STAMP) system-deps
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m examples.demo

train: $(STAMP)
	$(BIN)/python -m training.train --out runs/train

clean:
	rm -rf $(VENV) runs *.egg-info
