#!/usr/bin/env bash
# Issue 12's runs on the real CIFAR-10 copy, in three phases, most important comparisons first:
#   1  Swish vs ReLU at lr 0.1 (BN), the Lab 2-pipeline lr sweep, BN/augmentation at mean padding
#   2  seed 2 of the non-augmented configs (seeds 0 and 1 are in docs/results/assignment)
#   3  the Lab 2-pipeline L2 sweep, vflip, L1 strengths, depthwise
# Each phase is one `raylab run` into STORAGE/pN/<study>; run this script again after an
# interruption: a phase whose folder has Tune state is resumed (`raylab resume`), a finished one
# is skipped (its DONE marker). Variants whose configs earlier runs hold are --skip'ped.
#   usage: [PHASES="p2 p3"] scripts/fidelity_runs.sh [STORAGE] [extra raylab run flags, e.g. --data synthetic:500 --epochs 1]
# PHASES (default "p1 p2 p3") picks the phases, in that order: two chains, one trial at a time each,
# use both cores (issue 12 ran PHASES=p1 and PHASES="p2 p3" side by side).
set -u
# A local Ray instance of its own: without this, ray.init() joins any cluster `ray start`ed on the machine.
export RAY_ADDRESS=${RAY_ADDRESS:-local}
STORAGE=${1:-/work/runs/fidelity}; shift || true
RAYLAB=${RAYLAB:-raylab}
DATA=${DATA:-folder:/work/shared/data/cifar10-jpg.tar.gz}
COMMON=(--data "$DATA" --data-root "$STORAGE/data" --quiet)

phase() {  # phase NAME STUDY MAX_CONCURRENT JOB [select flags...]
  local name=$1 study=$2 conc=$3 job=$4; shift 4
  local dir="$STORAGE/$name/$study" rc
  [ -e "$STORAGE/$name/DONE" ] && { echo "=== phase $name: done before"; return 0; }
  echo "=== phase $name: $(date -u +%FT%TZ)"
  if [ -d "$dir/tune" ]; then
    "$RAYLAB" resume "$dir"
  else
    "$RAYLAB" run "$job" --storage "$STORAGE/$name" --max-concurrent "$conc" "${COMMON[@]}" "$@" $EXTRA
  fi
  rc=$?
  echo "=== phase $name ended with status $rc at $(date -u +%FT%TZ)"
  [ $rc -eq 0 ] && touch "$STORAGE/$name/DONE"
  [ $rc -lt 128 ] || exit $rc  # interrupted: stop here, the next start resumes this phase
}
EXTRA="$*"

PHASES=${PHASES:-p1 p2 p3}
want() { case " $PHASES " in *" $1 "*) return 0;; *) return 1;; esac; }

want p1 && phase p1 course_fidelity 1 jobs/course_fidelity.py \
  --only 'lab2_swish/*' --only 'lab2_lr_sweep_pipeline/*' --only 'lab2_batchnorm/*' --only 'lab2_augment/*' \
  --skip 'lab2_augment/baseline'
want p2 && phase p2 course_seed2 1 jobs/course_seed2.py
want p3 && phase p3 course_fidelity 1 jobs/course_fidelity.py \
  --only 'lab2_l2_sweep_pipeline/*' --only 'lab2_vflip/*' --only 'lab2_l1_strength/*' --only 'lab2_depthwise/*' \
  --skip 'lab2_l2_sweep_pipeline/wd=0.0001' --skip 'lab2_vflip/augment' \
  --skip 'lab2_l1_strength/l2' --skip 'lab2_l1_strength/l1=1e-05' --skip 'lab2_depthwise/conv'
exit 0
