"""raylab/sweep/storage_noise.py on Ray's real stderr handler (Ray imported, not started), and
StorageError on its way through Ray (copied and pickled). tests/test_faults.py runs the
sweeps that end in a full or read-only folder and checks their stderr is one line."""
import copy
import io
import logging
import pickle

import pytest

from raylab.errors import StorageError

TUNE = "ray.tune.execution.tune_controller"  # the logger of "Trial controller checkpointing failed"


@pytest.fixture
def stderr():
    """What Ray's stderr handler writes, filter on: a buffer in place of its stream (the one it
    took when Ray was imported, which pytest's capture does not see)."""
    import ray  # noqa: F401  (its import makes the handler the filter goes on)

    from raylab.sweep.storage_noise import hush_storage_faults

    hush_storage_faults()
    hush_storage_faults()  # once is enough: a second call adds nothing
    streams = [h for h in logging.getLogger("ray").handlers if type(h) is not logging.FileHandler]
    assert streams and all(len(h.filters) == 1 for h in streams)
    (ray_handler,) = [h for h in streams if type(h).__name__ == "PlainRayHandler"]
    buffer, level = io.StringIO(), logging.getLogger("raylab").level
    old = ray_handler.setStream(buffer)
    yield buffer
    ray_handler.setStream(old)
    logging.getLogger("raylab").setLevel(level)


def log_while_handling(exc: BaseException, message: str) -> None:
    """What Tune does: log a warning inside the `except` that then re-raises."""
    try:
        raise exc
    except BaseException:
        logging.getLogger(TUNE).warning(message)


def full_disk() -> StorageError:
    return StorageError("/study/parts/metrics/L0-000001.parquet", OSError(28, "No space left on device"))


def test_tunes_lines_about_a_storage_fault_stay_off_stderr(stderr):
    log_while_handling(full_disk(), "Trial controller checkpointing failed: cannot write ...")
    try:
        raise RuntimeError("sync failed") from OSError("Failed to open local file. Detail: [errno 28] No space left")
    except RuntimeError as exc:  # a pyarrow OSError (no errno attribute) as the cause, attached
        logging.getLogger("ray.train._internal.syncer").error("The latest sync operation failed", exc_info=exc)
    assert stderr.getvalue() == ""


def test_other_lines_and_debug_still_reach_stderr(stderr):
    log_while_handling(ValueError("a bug"), "Trial controller checkpointing failed: a bug")
    logging.getLogger(TUNE).warning("nothing is being handled")
    err = stderr.getvalue()
    assert "a bug" in err and "nothing is being handled" in err
    logging.getLogger("raylab").setLevel(logging.DEBUG)  # what `--debug` sets (raylab.cli.main_guard)
    log_while_handling(full_disk(), "Trial controller checkpointing failed: cannot write ...")
    assert "Trial controller checkpointing failed: cannot write" in stderr.getvalue()


@pytest.mark.parametrize("through", [copy.copy, lambda e: pickle.loads(pickle.dumps(e))], ids=["copy", "pickle"])
def test_storage_error_survives_ray_copying_it(through):
    """Ray copies a trial's exception (ray.air's skip_exceptions) and pickles it to the driver."""
    error = full_disk()
    again = through(error)
    assert type(again) is StorageError and str(again) == str(error)
    assert "No space left on device" in str(again)
