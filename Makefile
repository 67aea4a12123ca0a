# `make demo` and `make test` do all set-up on a fresh machine: a local .venv, reused afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint benchmark clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# --no-compile: Python byte-compiles what it imports, once; compiling every installed module took minutes
	$(BIN)/pip install --quiet --no-compile torch==2.13.0
	$(BIN)/pip install --quiet --no-compile -e '.[test,ray]'
	touch $(STAMP)

# moebius-tiny-trained (shipped weights, 128 px) on a held-out photograph it never saw
demo: $(STAMP)
	mkdir -p out
	$(BIN)/edge inpaint eval_data/images/flower.png eval_data/masks/flower.png -o out/demo.png --model moebius-tiny-trained

# the report test renders report.html in Debian's Chromium (driven by playwright, which downloads nothing)
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# the profiling tests build the native runner (CMake, g++) and drive Debian's adb client against an emulated phone
ADB := /usr/bin/adb
CMAKE := /usr/bin/cmake

$(ADB):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adb >/dev/null

$(CMAKE):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null

# the Android core's tests compile plain Java and run it under JUnit 5 with Android's own org.json (Debian's jars);
# the app's tests link its resources and manifest with aapt2 against Android's framework-res.apk
JUNIT := /usr/share/java/junit-platform-console-standalone.jar
ANDROID_JSON := /usr/share/java/com.android.json.jar
AAPT2 := /usr/bin/aapt2
FRAMEWORK_RES := /usr/share/android-framework-res/framework-res.apk

$(JUNIT) $(ANDROID_JSON) $(AAPT2) $(FRAMEWORK_RES):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq junit5 libandroid-json-java aapt android-framework-res >/dev/null

# the web demo's tests run onnxruntime-web (pinned in web_demo/package-lock.json) from web_demo/node_modules
NPM := /usr/bin/npm
WEB_MODULES := web_demo/node_modules/.package-lock.json

$(NPM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null

$(WEB_MODULES): web_demo/package-lock.json $(NPM)
	cd web_demo && npm ci --silent --no-audit --no-fund

# what CI runs (.ci/run): the linter, then every test on two workers (tests/conftest.py groups them by bundle)
test: $(STAMP) $(CHROMIUM) $(ADB) $(CMAKE) $(JUNIT) $(ANDROID_JSON) $(AAPT2) $(FRAMEWORK_RES) $(WEB_MODULES)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder

# the edit-test loop: everything that compiles no bundle and runs no whole pipeline (pytest marker `slow`)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

benchmark: $(STAMP)
	$(BIN)/python benchmarks/baseline.py

clean:
	rm -rf $(VENV) out
