"""Checkpoint files: corrupt or foreign state.pt refused in one line; a crash mid-write spares the previous one."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from helpers import ROOT, tiny_config
from tmtvis.checkpoint import STATE_FILE, DataProgress, latest_checkpoint, load_checkpoint, load_state, resolve_checkpoint, save_checkpoint
from tmtvis.config import Config, to_dict
from tmtvis.errors import TmtvisError
from workflows.cli import main


def tiny_state():
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 5)
    return model, opt, sched


def save(directory: Path, iteration: int, taxonomy: Path) -> None:
    directory.mkdir(parents=True)
    model, opt, sched = tiny_state()
    save_checkpoint(directory, model, opt, sched, iteration, DataProgress([[0, 10 * iteration]], 10 * iteration), Config(),
                    taxonomy)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _foreign_files() -> dict[str, bytes]:
    def saved(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    whole = saved({"model": {"w": torch.zeros(64, 64)}, "iteration": 3})
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("data.txt", "not torch")
    return {"random_bytes": os.urandom(777), "empty": b"", "text": b"hello\n", "truncated": whole[: len(whole) // 2],
            "other_zip": zipped.getvalue(), "pickled_callable": saved({"model": Evil()}),
            "plain_tensor": saved(torch.ones(3)), "dict_without_model": saved({"weights": {"w": torch.ones(2)}})}


FOREIGN = _foreign_files()


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_corrupt_or_foreign_state_is_one_line_without_weights_only_advice(kind, tmp_path, capsys, synth_root):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / STATE_FILE).write_bytes(FOREIGN[kind])
    expected = f"not a tmtvis checkpoint (or corrupted): {ck / STATE_FILE}"
    with pytest.raises(TmtvisError) as e:
        load_state(ck)
    assert str(e.value) == expected
    (ck / "config.yaml").write_text(yaml.safe_dump(to_dict(tiny_config(synth_root))))
    shutil.copy(synth_root / "prepared/taxonomy.json", ck / "taxonomy.json")
    with pytest.raises(TmtvisError) as e:
        load_checkpoint(ck)
    assert str(e.value) == expected
    rc = main(["infer", "--checkpoint", str(ck), "--input", str(synth_root / "data/ytvis/valid.json"),
               "--dataset", "ytvis_synth", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert rc == 2 and captured.err.strip() == f"tmtvis: error: {expected}"
    assert "weights_only" not in captured.err and "pwned" not in captured.out


CRASH = """
import sys, torch
from pathlib import Path
from tmtvis import checkpoint
from tmtvis.checkpoint import DataProgress
from tmtvis.config import Config

directory, taxonomy = Path(sys.argv[1]), Path(sys.argv[2])
model = torch.nn.Linear(4, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
sched = torch.optim.lr_scheduler.StepLR(opt, 5)

def dies_half_way(obj, f, *a, **k):  # the process is killed while the file is half written
    with open(f, "wb") as out:
        out.write(b"PK\\x03\\x04" + b"x" * 5000)
        out.flush()
        import os
        os._exit(9)

torch.save = dies_half_way
checkpoint.torch.save = dies_half_way
directory.mkdir(parents=True)
checkpoint.save_checkpoint(directory, model, opt, sched, 6, DataProgress([[0, 60]], 60), Config(), taxonomy)
"""


def test_crash_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    taxonomy = tmp_path / "taxonomy.json"
    taxonomy.write_text("{}")
    storage = tmp_path / "run" / "checkpoints"
    first = storage / "ray_train" / "checkpoint_2026-01-01_00-00-00.000001"
    save(first, 3, taxonomy)
    second = storage / "ray_train" / "checkpoint_2026-01-01_00-00-09.000001"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CRASH, str(second), str(taxonomy)], env=env, capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    assert not (second / STATE_FILE).exists()  # only a hidden temporary file was being written
    # A copy cut short (e.g. Ray uploading it to storage) is complete but for the end of state.pt.
    third = storage / "ray_train" / "checkpoint_2026-01-01_00-00-19.000001"
    shutil.copytree(first, third)
    (third / "meta.json").write_text(json.dumps({**json.loads((first / "meta.json").read_text()), "iteration": 9}))
    with open(third / STATE_FILE, "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    # and a meta.json cut short
    fourth = storage / "ray_train" / "checkpoint_2026-01-01_00-00-29.000001"
    shutil.copytree(first, fourth)
    (fourth / "meta.json").write_text('{"iteration": 12, "data_pos')

    found, meta = latest_checkpoint(storage)
    assert found == first and meta["iteration"] == 3 and meta["data_position"] == 30
    state = load_state(found)
    assert state["iteration"] == 3 and set(state["model"]) == {"weight", "bias"}
    assert resolve_checkpoint(tmp_path / "run") == first  # a run dir resolves to the last whole checkpoint
