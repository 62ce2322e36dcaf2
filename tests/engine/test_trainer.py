from tmtvis.engine.trainer import failure_summary


class TrainingFailed(Exception):
    def __init__(self, failures: dict) -> None:
        super().__init__("Training failed due to worker errors:\n  see below")
        self.worker_failures = failures


def test_failure_summary_names_the_worker_error():
    err = TrainingFailed({1: ValueError("Traceback (most recent call last):\n  File x\nValueError: Invalid learning rate: -1.0")})
    assert failure_summary(err) == "ValueError: Invalid learning rate: -1.0"
    assert failure_summary(RuntimeError("boom\n")) == "boom"
    assert failure_summary(TrainingFailed({})) == "see below"
