# SharedBridge: `make demo` runs the main job, `make test` runs every suite.
# Each suite script writes its machine-readable results to build/test-results/;
# scripts/summarize.py prints one line per suite and, last, the total line.

RESULTS := build/test-results

# Python's compiled bytecode goes to build/pycache, never into the source tree, and is kept:
# without it every process a suite starts (a spawn child, a CLI, a cross-language driver)
# compiles the package (and pytest, on the pyenv interpreters) from source again, which was
# about 40% of the CPU time of the process-heavy tests. (An environment that sets
# PYTHONDONTWRITEBYTECODE would otherwise keep the cache from ever being written.)
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/build/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: all build demo dist test test-dotnet test-python test-layers test-cross test-notebook notebook test-install test-bench bench bench-smoke deps clean

all: build

deps:
	bash scripts/ensure-deps.sh

build:
	dotnet build SharedBridge.sln -c Release -nologo -v quiet

demo: build
	bash scripts/demo.sh

# Every package a user installs, into build/dist/: the NuGet packages SharedBridge (+ .snupkg),
# SharedBridge.Tensors (+ .snupkg) and
# SharedBridge.Tool, the Python sdist and wheel (scripts/dist.sh). Version: python/sharedbridge/VERSION.
dist:
	bash scripts/dist.sh

# Every suite runs even if an earlier one fails; the exit status is non-zero if any failed.
test: deps build
	@rm -rf $(RESULTS); mkdir -p $(RESULTS)
	@status=0; \
	bash scripts/test-dotnet.sh $(RESULTS) || status=1; \
	bash scripts/test-python.sh $(RESULTS) || status=1; \
	python3 scripts/check_python_layers.py $(RESULTS) || status=1; \
	bash scripts/test-cross.sh $(RESULTS) || status=1; \
	bash scripts/test-notebook.sh $(RESULTS) || status=1; \
	bash scripts/test-install.sh $(RESULTS) || status=1; \
	bash scripts/test-bench.sh $(RESULTS) || status=1; \
	python3 scripts/summarize.py $(RESULTS) || status=1; \
	exit $$status

test-dotnet: build
	@mkdir -p $(RESULTS); bash scripts/test-dotnet.sh $(RESULTS); python3 scripts/summarize.py $(RESULTS)

test-python: deps
	@mkdir -p $(RESULTS); bash scripts/test-python.sh $(RESULTS); python3 scripts/summarize.py $(RESULTS)

# The Python package's layering: no import cycle, no import from a lower layer to a higher one.
test-layers:
	@mkdir -p $(RESULTS); python3 scripts/check_python_layers.py $(RESULTS); python3 scripts/summarize.py $(RESULTS)

test-cross: build
	@mkdir -p $(RESULTS); bash scripts/test-cross.sh $(RESULTS); python3 scripts/summarize.py $(RESULTS)

# examples/notebooks/dotnet_and_numpy.ipynb executed headless (nbclient), outputs and /dev/shm checked.
test-notebook: build deps
	@mkdir -p $(RESULTS); bash scripts/test-notebook.sh $(RESULTS); python3 scripts/summarize.py $(RESULTS)

# The checked-in notebook with its outputs and figures: executed as test-notebook does, then written
# back to examples/notebooks/dotnet_and_numpy.ipynb when every check passes (commit the result).
notebook: build deps
	@mkdir -p build/notebook; bash scripts/test-notebook.sh build/notebook --update

# The packages (make dist) installed into a fresh venv, console project and tool folder, and a
# C# <-> Python round trip through the installed copies (tests/install).
test-install: deps
	@mkdir -p $(RESULTS); bash scripts/test-install.sh $(RESULTS); python3 scripts/summarize.py $(RESULTS)

# The `make bench` smoke run (tiny sizes, well under a minute) checked as a suite (tests/bench).
test-bench: build
	@mkdir -p $(RESULTS); bash scripts/test-bench.sh $(RESULTS); python3 scripts/summarize.py $(RESULTS)

# Every benchmark of docs/benchmarks.md against its baseline, in one run (a few minutes on 2 cores):
# build/bench/results.json, then docs/benchmarks.md + docs/benchmarks/*.png + a copy of the JSON.
bench: build
	/usr/bin/python3 bench/run.py --out build/bench
	/usr/bin/python3 bench/render.py build/bench/results.json docs/benchmarks.md --copy-json

# The same, tiny sizes, into build/bench-smoke/ (never the checked-in docs).
bench-smoke: build
	/usr/bin/python3 bench/run.py --smoke --out build/bench-smoke
	/usr/bin/python3 bench/render.py build/bench-smoke/results.json build/bench-smoke/doc/benchmarks.md

clean:
	rm -rf build
	find src tests -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} +
