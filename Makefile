# Two commands on a fresh machine: `make run` and `make test`. Both build .venv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Put the venv first on PATH so Jupyter kernels started by papermill/nbval use it.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-fast notebooks lab bench bench-scale bench-balance bench-detect mutate sample clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[lab,test]"
	# a Jupyter kernel named for the kit, so that students pick this environment in any Jupyter
	$(BIN)/python -m ipykernel install --sys-prefix --name faceattr --display-name "faceattr (.venv)" >/dev/null
	touch $(STAMP)

sample: $(STAMP)
	$(BIN)/faceattr sample data/sample

run: $(STAMP)
	$(BIN)/faceattr run --out runs/latest

test: $(STAMP)
	$(BIN)/python -m pytest

# The inner loop, about a minute on 2 cores: every test that neither trains a model (tests/conftest.py marks those
# `trains`) nor runs the kit end to end (marked `slow`: a browser, lessons through a kernel, a fresh venv, MTCNN over
# the photo cases); nbval over notebooks 01-03. `make test` runs them all.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not trains and not slow"

# Re-execute the lessons in place, in order, on the sample, so their stored outputs (which nbval compares) match
# the code, as in a clean clone. For developers, after changing a notebook or what it calls; an earlier
# runs/notebooks is kept, renamed with the time.
notebooks: $(STAMP)
	if [ -e runs/notebooks ]; then mv runs/notebooks "runs/notebooks.$$(date +%Y%m%d-%H%M%S)"; fi
	cd notebooks && for notebook in [0-9][0-9]_*.ipynb; do \
	    FACEATTR_DATA=sample ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	        --ExecutePreprocessor.kernel_name=faceattr --ExecutePreprocessor.timeout=1800 "$$notebook" || exit 1; \
	done

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(if $(DATA),--data $(DATA)) $(if $(ONLY),--only $(ONLY))

# The real experiment at full size: 24,000 generated UTKFace-format images, the default for 20 epochs and the whole
# sequence with num_epochs 20, against the report's recipe (over an hour on 2 cores, most of it the sequence).
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py

# The full multi-task balance study: every scheme, 3 seeds, 15 epochs, the sample and a generated 3,000-image folder;
# first, the race accuracy the sample's own colours allow (benchmarks/ceiling.py).
bench-balance: $(STAMP)
	$(BIN)/python benchmarks/ceiling.py
	$(BIN)/python benchmarks/balance.py

bench-detect: $(STAMP)
	$(BIN)/python benchmarks/detect.py

# Mutation testing of the data layer, cache, metrics, labels, recipe, run folder and stale-model notes (about 2,100
# mutants, 11 minutes on 2 quiet cores; not in `make test`).
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[mutate]"
	rm -rf mutants
	$(BIN)/mutmut run; $(BIN)/mutmut results

clean:
	rm -rf runs .pytest_cache mutants
