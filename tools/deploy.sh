#!/usr/bin/env bash
# The deployment paths of docs/DEPLOY.md, each run for real on this machine (the Makefile targets
# image, sif and deploy-check call it):
#   tools/deploy.sh image       docker build of docker/Dockerfile (BASE, IMAGE, CA_CERTS from the environment)
#   tools/deploy.sh sif         the image as an Apptainer file (SIF, default build/stvm.sif)
#   tools/deploy.sh container   `dvc repro` of the tiny params in the image (docker run, CPU) and in the
#                               venv; compares their metrics
#   tools/deploy.sh apptainer   `snakemake --cores 2 --use-singularity` of the tiny params in the SIF
#   tools/deploy.sh slurm       tests/pipeline/test_slurm.py: the tiny DAG as sbatch jobs
#   tools/deploy.sh check       all of the above, then a table of each step's wall time and result
# A missing tool (docker engine, apptainer, sbatch) is one line naming it and how to get it, exit 2.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE=${IMAGE:-stvm:$VERSION}
SIF=${SIF:-build/stvm.sif}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PYTHON")
WORK=${DEPLOY_WORK:-$ROOT/build/deploy}
export OMP_NUM_THREADS=1

die() { echo "deploy.sh: $*" >&2; exit 2; }

need_docker() {
  command -v docker > /dev/null || die "no 'docker' command: install Docker Engine (Debian/Ubuntu: apt-get install docker.io; https://docs.docker.com/engine/install/)"
  docker info > /dev/null 2>&1 || die "the Docker engine does not answer: start it (systemctl start docker, or dockerd &) and check that you may use it (docker group)"
}

apptainer_cmd() {  # a real apptainer on PATH, else the sid-root wrapper of tools/apptainer_sid.sh
  if command -v apptainer > /dev/null; then command -v apptainer
  elif [ -x "${STVM_APPTAINER_ROOT:-/var/lib/stvm/apptainer-sid}/usr/bin/apptainer" ]; then echo "$ROOT/tools/bin/apptainer"
  else die "no 'apptainer' command: install Apptainer (https://apptainer.org/docs/admin/main/installation.html); on Debian 12: sudo tools/apptainer_sid.sh setup"
  fi
}

need_venv() { [ -x "$PYTHON" ] || die "no virtualenv python at $PYTHON: run make venv (or set PYTHON=...)"; }

tiny_copy() {  # tiny_copy DIR: the repository's files in a new git repo with the pipeline tests' tiny params
  rm -rf "$1"; mkdir -p "$1"
  (cd "$ROOT" && "$PYTHON" -m tests.pipeline.conftest "$1" > /dev/null) || die "could not make the tiny copy $1"
}

do_image() {
  need_docker
  local base_arg=() c
  [ -n "${BASE:-}" ] && base_arg=(--build-arg "BASE=$BASE")
  rm -f docker/ca/*.crt
  for c in ${CA_CERTS:-}; do cp "$c" "docker/ca/$(basename "$c" .crt).crt" || die "CA_CERTS: cannot read $c"; done
  docker build --network host "${base_arg[@]}" -f docker/Dockerfile -t "$IMAGE" .
  local rc=$?
  rm -f docker/ca/*.crt
  [ $rc = 0 ] && echo "deploy.sh: built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}'))"
  return $rc
}

do_sif() {
  need_docker
  local app; app=$(apptainer_cmd) || exit 2
  docker image inspect "$IMAGE" > /dev/null 2>&1 || die "no image $IMAGE: build it with make image"
  local id; id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  if [ -f "$SIF" ] && [ "$(cat "$SIF.image-id" 2> /dev/null)" = "$id" ]; then
    echo "deploy.sh: $SIF is up to date with $IMAGE ($id)"; return 0
  fi
  mkdir -p "$(dirname "$SIF")" build/tmp
  local tar; tar=$(mktemp -p build/tmp image.XXXXXX.tar)
  docker save -o "$tar" "$IMAGE" || return 1
  chmod 644 "$tar"; chmod 777 build/tmp "$(dirname "$SIF")"  # apptainer runs as an unprivileged user
  "$app" build --force "$SIF" "docker-archive://$ROOT/$tar"
  local rc=$?
  rm -f "$tar"
  [ $rc = 0 ] && echo "$id" > "$SIF.image-id" && echo "deploy.sh: wrote $SIF ($(du -h "$SIF" | cut -f1))"
  return $rc
}

do_container() {  # dvc repro of the tiny params in the image and in the venv; compare the metrics
  need_docker; need_venv
  docker image inspect "$IMAGE" > /dev/null 2>&1 || die "no image $IMAGE: build it with make image"
  tiny_copy "$WORK/container"; tiny_copy "$WORK/venv"
  docker run --rm --network none --user "$(id -u):$(id -g)" -e OMP_NUM_THREADS=1 -v "$WORK/container":/work \
    "$IMAGE" dvc repro report > "$WORK/container.log" 2>&1 || { tail -20 "$WORK/container.log"; return 1; }
  (cd "$WORK/venv" && PATH=$BIN:$PATH dvc repro report > "$WORK/venv.log" 2>&1) || { tail -20 "$WORK/venv.log"; return 1; }
  local owner; owner=$(find "$WORK/container/results" ! -user "$(id -u)" | head -1)
  [ -z "$owner" ] || { echo "deploy.sh: $owner is not owned by uid $(id -u)"; return 1; }
  "$PYTHON" tools/compare_runs.py "$WORK/container" "$WORK/venv" --expect-container docker
}

do_apptainer() {  # snakemake --use-singularity of the tiny params, every rule in the SIF
  need_venv
  local app; app=$(apptainer_cmd) || exit 2
  [ -f "$SIF" ] || die "no $SIF: write it with make sif"
  tiny_copy "$WORK/apptainer"
  mkdir -p "$WORK/apptainer/build"; ln -sf "$(readlink -f "$SIF")" "$WORK/apptainer/build/stvm.sif"
  chown -R 1000:1000 "$WORK/apptainer" 2> /dev/null || true  # the wrapper runs apptainer as the copy's owner
  # Snakemake binds its source cache (under XDG_CACHE_HOME) into every container: one that user can read
  mkdir -p "$WORK/xdg-cache"; chmod 1777 "$WORK/xdg-cache"
  (cd "$WORK/apptainer" && umask 000 && export XDG_CACHE_HOME=$WORK/xdg-cache && PATH=$(dirname "$app"):$BIN:$PATH \
    snakemake --cores 2 --use-singularity > "$WORK/apptainer.log" 2>&1) \
    || { tail -30 "$WORK/apptainer.log"; return 1; }
  "$PYTHON" tools/compare_runs.py "$WORK/apptainer" --expect-container apptainer
}

do_slurm() {
  need_venv
  command -v sbatch > /dev/null || die "no 'sbatch' command: install SLURM, or start a one-node cluster here with: sudo tools/slurm_local.sh up"
  tools/slurm_local.sh status > /dev/null || die "SLURM is not running: sudo tools/slurm_local.sh up"
  CI=true "$PYTHON" -m pytest -q -p no:cacheprovider --basetemp="$WORK/slurm" tests/pipeline/test_slurm.py
}

do_check() {
  local steps=(image sif container apptainer slurm) names rows=() s t0 rc
  for s in "${steps[@]}"; do
    echo "=== deploy-check: $s"
    t0=$(date +%s)
    ( "do_$s" ) 2>&1 | tee "$WORK/$s.out"
    rc=${PIPESTATUS[0]}
    rows+=("$(printf '%-10s %8ss  %s' "$s" "$(( $(date +%s) - t0 ))" "$([ "$rc" = 0 ] && echo pass || echo "FAIL (exit $rc)")")")
  done
  echo; echo "step       wall time  result"
  printf '%s\n' "${rows[@]}" | tee "$WORK/deploy-check.txt"
  ! grep -q FAIL "$WORK/deploy-check.txt"
}

mkdir -p "$WORK"
case "${1:-}" in
  image|sif|container|apptainer|slurm|check) "do_$1" ;;
  *) die "usage: tools/deploy.sh image|sif|container|apptainer|slurm|check" ;;
esac
