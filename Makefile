# Two entry points (README "Quick start"): `make demo` runs the pipeline, `make test` the tests.
# Both create the virtualenv .venv/ from requirements.lock when it is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stvm-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test venv lock clean-demo ablation

venv: $(STAMP)

# torch is installed first and pinned exactly: its CPU wheel is local, any looser spec pulls CUDA.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	dvc repro
	dvc metrics show
	$(PY) -m stvm summary

# The Table IV study on the synthetic benchmark: every variant, 3 seeds (about 25 min on 2 CPU
# cores). Runs as a DVC experiment in the workspace, then prints mean ± std and min over seeds.
ablation: $(STAMP)
	dvc exp run -S 'seeds=[0,1,2]' -S 'variants=[ST,ST_Aug,ST_MT,STvM_Raw,STvM]'
	$(PY) -m stvm summary

test: $(STAMP)
	$(PY) -m pytest -q

# Regenerate the lock file from the current venv (torch's local +cpu tag stripped so the
# container resolves the CUDA build of the same version).
lock:
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' | grep -v '^stvm' > requirements.lock

clean-demo:
	rm -rf data results logs .snakemake
