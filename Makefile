# Two entry points (README "Quick start"): `make demo` runs the pipeline, `make test` the tests.
# Both create the virtualenv .venv/ from requirements.lock when it is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stvm-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test venv lock lock-cuda baseline clean-demo ablation benchmark calibrate paper paper-params gpu-check compare \
        slurm-plugin slurm-up slurm-profile docker-base image sif deploy-check

venv: $(STAMP)

# torch is installed first and pinned exactly: its CPU wheel is local, any looser spec pulls CUDA.
# docker/constraints.txt pins what a CUDA build of torch adds (where PyPI's torch is installed), as
# in the container; on the CPU wheel it changes nothing. Byte-compiling on every core afterwards
# instead of pip's one-core compile saves ~17 s of the demo's budget.
$(STAMP): pyproject.toml requirements.lock docker/constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0 --no-compile -c docker/constraints.txt
	$(PY) -m pip install --quiet -r requirements.lock --no-compile -c docker/constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true  # as pip: skip files for newer Pythons
	touch $(STAMP)

# The `slurm` extra (snakemake-executor-plugin-slurm, pinned in pyproject.toml) in the venv that runs
# snakemake: tests/pipeline/test_slurm.py submits the tiny DAG with it (skipped where no SLURM runs).
SLURM_STAMP := $(VENV)/.stvm-slurm
$(SLURM_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --no-compile -c requirements.lock -e '.[slurm]'
	touch $(SLURM_STAMP)
slurm-plugin: $(SLURM_STAMP)

demo: $(STAMP)
	dvc repro
	dvc metrics show
	$(PY) -m stvm summary
	@echo "Report: $(abspath results/report/report.html)"

# The synthetic benchmark tier (`stvm synth_benchmark`; docs/BENCHMARKS.md), outside DVC: a measurement
# of the method, resumable (rerun to continue), printing where the time goes. Its two presets are
# the params files under configs/synth_benchmark/. JOBS: steps run at once, each with common.threads
# threads (the results do not depend on it): JOBS x common.threads should fill the cores, no more.
JOBS   ?= 2
SB      = $(PY) -m stvm synth_benchmark --jobs $(JOBS)
# `make calibrate` / `make ablation`: the calibrated preset (calibrated.yaml), in results/calibrated:
# phase calibrate (the source-only model on held-out synthetic source frames and on the target val
# set: the domain gap), phase ablation (calibrate's steps, then AdaBN and every variant over three
# adaptation seeds, at the params' shift and budget).
CALIBRATED := --params configs/synth_benchmark/calibrated.yaml --out results/calibrated
# calibrated.yaml has common.threads 2: one step at a time fills 2 cores
calibrate ablation: JOBS = 1
calibrate: $(STAMP)
	$(SB) $(CALIBRATED) --phase calibrate
ablation: $(STAMP)
	$(SB) $(CALIBRATED) --phase ablation

# `make benchmark`: the paper-geometry preset (paper_geometry.yaml), in results/benchmark: phases
# geometry (each head-geometry choice alone, source model and AdaBN), shift (bisected on Source,
# AdaBN and Oracle only, then frozen), curves (mIoU against iterations, 4x the old budget) and Table
# IV at one budget for every variant: the curves' plateau (stvm.synth_benchmark.phases.plateau_budget),
# or BUDGET=N; fixed once in table/budget.json.
BUDGET ?=
benchmark: $(STAMP)
	$(SB) --params configs/synth_benchmark/paper_geometry.yaml --out results/benchmark $(if $(BUDGET),--budget $(BUDGET))

test: $(STAMP) $(SLURM_STAMP)
	$(PY) -m pytest -q

# Deployment (docs/DEPLOY.md; tools/deploy.sh). `make slurm-up`: a one-node SLURM cluster with
# accounting on this machine (root; tools/slurm_local.sh); `make slurm-profile`: the SLURM profile
# fitted to it (build/slurm-local; `snakemake --profile build/slurm-local`).
slurm-up:
	tools/slurm_local.sh up
slurm-profile: $(STAMP)
	$(PY) tools/slurm_profile.py workflow/profiles/slurm/local.yaml --out build/slurm-local

# `make image`: docker/Dockerfile as $(IMAGE), on its CUDA base; without a registry,
# `make docker-base` (a debootstrapped Debian 12, root) and `make image BASE=stvm-base:bookworm`.
# CA_CERTS: extra CA files pip must trust during the build (a TLS-inspecting proxy).
# `make sif`: the built image as the Apptainer file the Snakefile's container defaults to.
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE    ?= stvm:$(VERSION)
BASE     ?=
CA_CERTS ?=
SIF      ?= build/stvm.sif
DEPLOY   := IMAGE="$(IMAGE)" BASE="$(BASE)" CA_CERTS="$(CA_CERTS)" SIF="$(SIF)" PYTHON="$(abspath $(PY))"
docker-base:
	tools/docker_base.sh
image:
	$(DEPLOY) tools/deploy.sh image
sif:
	$(DEPLOY) tools/deploy.sh sif
# Builds the image, runs `dvc repro` in it, Snakemake through Apptainer, the tiny DAG through SLURM;
# prints each step's wall time and result (build/deploy/deploy-check.txt).
deploy-check: $(STAMP) $(SLURM_STAMP)
	$(DEPLOY) tools/deploy.sh check

# One prepared check of every CUDA path plus the paper-scale speed/memory figures (docs/REPRODUCE.md §10,
# tools/gpu_check.py). Runs with the machine's own python/torch (no venv, no DVC/Snakemake needed):
# `make gpu-check PYTHON=/path/to/python GPU_CHECK_ARGS="--out /tmp/gc"`; `GPU_CHECK_ARGS=--dry` on a CPU.
PYTHON         ?= python3
GPU_CHECK_ARGS ?=
gpu-check:
	$(PYTHON) tools/gpu_check.py $(GPU_CHECK_ARGS)

# Regenerate the lock file from the current venv (torch's local +cpu tag stripped so the
# container resolves the CUDA build of the same version).
lock:
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' | grep -v '^stvm' > requirements.lock

# Container pins beyond the lock (torch's CUDA runtime, setuptools): docker/constraints.txt, resolved
# from PyPI for Linux x86_64 (needs PyPI; downloads a few GB of wheel metadata/wheels once).
lock-cuda: $(STAMP)
	$(PY) docker/make_constraints.py

# Paper settings (configs/paper/<name>.yaml, each an overlay of configs/paper/base.yaml; docs/REPRODUCE.md).
# `make paper SETTING=gta5_dlv2` merges the setting over its base, validates it, writes the whole file
# as params.yaml (`stvm params --out`: the one file every stage and both DAG tools read) and runs the
# stages the setting needs as the DVC experiment <name> (`dvc exp show` compares them).
# EXP_ARGS passes more flags, e.g. EXP_ARGS="-S 'seeds=[0,1,2,3,4]'" (then also set EXP_NAME).
PAPER_SETTINGS := $(filter-out base,$(sort $(basename $(notdir $(wildcard configs/paper/*.yaml)))))
PAPER_STAGES   := summary report
EXP_NAME       ?= $(SETTING)
EXP_ARGS       ?=

paper-params: $(STAMP)
	@case " $(PAPER_SETTINGS) " in *" $(SETTING) "*) ;; \
	  *) echo "make: SETTING must be one of: $(PAPER_SETTINGS)" >&2; exit 2 ;; esac
	$(PY) -m stvm params --params configs/paper/$(SETTING).yaml --out params.yaml

paper: paper-params
	dvc exp run -n $(EXP_NAME) $(EXP_ARGS) $(PAPER_STAGES)

# DVC experiments side by side (`dvc exp run -S ...` first): the params that differ and each run's
# mean ± std (min) mIoU per experiment; `dvc exp show` without its dependency-hash columns.
# `make compare` uses a Python that already has stvm (your own venv on PATH) instead of building .venv/.
ifeq ($(wildcard $(STAMP))$(shell python3 -c 'import stvm, dvc' 2>/dev/null && echo yes),yes)
compare:
	python3 -m stvm compare
else
compare: $(STAMP)
	$(PY) -m stvm compare
endif

# The demo's results as the baseline DVC experiments are compared with (`make compare`): dvc.lock and
# the per-run summaries committed; nothing to do when they are already.
baseline:
	git add dvc.lock results/summary
	git diff --cached --quiet -- dvc.lock results/summary || git commit -m "stvm baseline: dvc.lock and results/summary" -- dvc.lock results/summary

clean-demo:
	rm -rf data results logs .snakemake
