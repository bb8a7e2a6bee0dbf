"""Write a job file's course-report side (claims, reported values, pairs) into a results folder's
study.json, leaving everything else in it as the run wrote it.

    python scripts/refresh_claims.py JOB_FILE STUDY_DIR

For results run before those were declared (docs/results/assignment), or declared since: the
job file is where they live, and study.json is where `raylab report` reads them.
"""
import json
import sys
from pathlib import Path

from raylab.declare.study import load_job

KEYS = ("claims", "reported", "pairs")


def main(job: str, folder: str) -> int:
    path = Path(folder) / "study.json"
    meta = json.loads(path.read_text()) if path.exists() else {}
    described = load_job(job).describe()
    meta.update({k: described[k] for k in KEYS})
    tmp = path.with_name(".study.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python scripts/refresh_claims.py JOB_FILE STUDY_DIR", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(*sys.argv[1:]))
