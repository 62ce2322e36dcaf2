"""errors.root_cause: the one reading of a failed Ray task, Train run or Tune trial (no Ray needed)."""
import pickle

from tmtvis.errors import ConfigError, DataError, TmtvisError, root_cause


class RayLike(Exception):
    """What Ray raises for a remote error: the remote traceback as text, the original in `.cause`."""

    def __init__(self, text: str, cause: BaseException | None = None) -> None:
        super().__init__(text)
        self.cause = cause


class TrainingFailed(Exception):
    def __init__(self, failures: dict) -> None:
        super().__init__("Training failed due to worker errors:\n  see below")
        self.worker_failures = failures


def test_a_data_error_anywhere_in_the_chain_is_the_users_one_line():
    bad = DataError("f.jpg", "", "unreadable or truncated image")
    for wrapped in (RayLike("ray::MapBatches()\n  File x\n...", bad), TrainingFailed({0: RayLike("text", bad)})):
        cause = root_cause(wrapped)
        assert type(cause.user_error) is DataError and cause.line == str(bad) == "f.jpg: unreadable or truncated image"
    try:
        try:
            raise bad
        except DataError as e:
            raise RuntimeError("while streaming") from e
    except RuntimeError as e:
        assert root_cause(e).user_error.path == "f.jpg"


def test_a_tmtvis_error_kept_only_as_remote_text_is_found():
    text = ("ray::train_fn() (pid=1)\n  File x\ntmtvis.errors.ConfigError: optim.lr=-1: must be > 0\n\n"
            "The above exception was the direct cause of the following exception:\nWorkerGroupError:")
    cause = root_cause(TrainingFailed({1: RayLike(text)}))
    assert isinstance(cause.user_error, TmtvisError) and cause.line == "optim.lr=-1: must be > 0"
    assert root_cause(ConfigError("a: b\nmore")).line == "a: b"


def test_other_errors_name_the_first_error_line_or_the_last_line():
    err = TrainingFailed({1: ValueError("Traceback (most recent call last):\n  File x\nValueError: Invalid learning rate: -1.0")})
    cause = root_cause(err)
    assert cause.user_error is None and cause.line == "ValueError: Invalid learning rate: -1.0"
    wrapper = RayLike("WorkerGroupError: workers failed:\n  File y\nKeyError: 'x'\nRuntimeError: later")
    assert root_cause(wrapper).line == "KeyError: 'x'"
    assert root_cause(RuntimeError("boom\n")).line == "boom"
    assert root_cause(TrainingFailed({})).line == "see below"
    assert root_cause(RuntimeError()).line == "RuntimeError"
    assert len(root_cause(RuntimeError("x" * 1000)).line) == 300


def test_a_data_error_pickles_with_its_parts():
    # across Ray processes (DataContext.raise_original_map_exception) the error must come back as itself
    e = pickle.loads(pickle.dumps(DataError("a.json", "videos[0]", "missing key 'id'")))
    assert type(e) is DataError and (e.path, e.entry, e.problem) == ("a.json", "videos[0]", "missing key 'id'")
    assert str(e) == "a.json: videos[0]: missing key 'id'"
