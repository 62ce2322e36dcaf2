"""The foundation commands end to end: synth -> check -> prepare, and one-line errors with exit 2."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import TINY_CLIP
from tmtvis.data.manifest import read_manifest
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.taxonomy_bank import load_bank
from workflows.cli import main



@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    for preset in ("ytvis", "ovis", "uvo"):
        assert main(["data", "synth", "--preset", preset, "--videos", "6", "--frames", "4", "--size", "64x64",
                     "--seed", "1", "--val-fraction", "0.34", "--out", str(root / preset)]) == 0
    return root


def test_synth_output_checks_clean(synth_root, capsys):
    for preset in ("ytvis", "ovis", "uvo"):
        for split in ("train", "valid"):
            assert main(["data", "check", str(synth_root / preset / f"{split}.json"),
                         "--images", str(synth_root / preset / "JPEGImages"), "--json"]) == 0
            summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert summary["videos"] == (4 if split == "train" else 2) and summary["frames_checked"]


def test_prepare_on_three_presets(synth_root, tmp_path, capsys):
    clip_cfg = tmp_path / "clip.json"
    clip_cfg.write_text(json.dumps(TINY_CLIP))
    args = ["prepare", "--config", "tiny", "--out", str(tmp_path / "prepared"),
            "--set", f"data.root={synth_root}", "--set", "taxonomy.clip_model=tmtvis-cli-test",
            "--set", f"taxonomy.clip_model_config={clip_cfg}"]
    assert main(args) == 0
    out = tmp_path / "prepared"
    tax = UnifiedTaxonomy.load(out / "taxonomy.json")
    bank = load_bank(out / "bank.parquet")
    assert len(bank.ids) == len(tax) and bank.names == tax.names
    assert {"person", "dog", "car", "motorcycle"} <= set(tax.names)
    for name, preset in (("ytvis_synth", "ytvis"), ("ovis_synth", "ovis"), ("uvo_synth", "uvo")):
        for split in ("train", "valid"):
            gt = json.loads((synth_root / preset / f"{split}.json").read_text())
            assert len(read_manifest(out / "manifests" / f"{name}_{split}.parquet")) == len(gt["videos"])
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("(reused)") == 7  # bank + 6 manifests


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], capture_output=True, text=True, env=env)


def test_bad_input_is_one_line_and_exit_2(synth_root, tmp_path):
    gt = json.loads((synth_root / "ytvis" / "train.json").read_text())
    gt["annotations"][0]["segmentations"] = gt["annotations"][0]["segmentations"][:-1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(gt))
    res = run_cli("data", "check", str(bad))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert str(bad) in lines[0] and "annotations[0]" in lines[0] and "but video 1 has 4 frames" in lines[0]

    ovis = json.loads((synth_root / "ovis" / "train.json").read_text())
    broken = tmp_path / "images"
    shutil.copytree(synth_root / "ovis" / "JPEGImages", broken)
    target = broken / ovis["videos"][0]["file_names"][1]
    target.write_bytes(target.read_bytes()[:300])
    res = run_cli("data", "check", str(synth_root / "ovis" / "train.json"), "--images", str(broken))
    assert res.returncode == 2 and str(target) in res.stderr and len(res.stderr.strip().splitlines()) == 1

    res = run_cli("prepare", "--config", "tiny", "--out", str(tmp_path), "--set", "bogus=1")
    assert res.returncode == 2 and "unknown key 'bogus'" in res.stderr and "Traceback" not in res.stderr


def test_check_recognises_a_results_file(tiny_dataset, tmp_path, capsys):
    from tmtvis.data.rle import encode_mask

    gt_path, _, gt = tiny_dataset
    v = gt["videos"][0]
    mask = np.zeros((v["height"], v["width"]), np.uint8)
    mask[:3, :4] = 1
    results = [{"video_id": v["id"], "category_id": gt["categories"][0]["id"], "score": 0.7,
                "segmentations": [encode_mask(mask)] * (v.get("length") or len(v["file_names"]))}]
    res_path = tmp_path / "results.json"
    res_path.write_text(json.dumps(results))
    assert main(["data", "check", str(res_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results file" in err[0] and f"tmtvis data check {res_path} --gt GT.json" in err[0]

    assert main(["data", "check", str(res_path), "--gt", str(gt_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["results"] and summary["predictions"] == 1 and summary["videos"] == 1

    results[0]["segmentations"][1] = {"size": [v["height"], v["width"]], "counts": "0P"}  # truncated
    res_path.write_text(json.dumps(results))
    assert main(["data", "check", str(res_path), "--gt", str(gt_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[0].segmentations[1]" in err[0] and "truncated" in err[0]


def test_synth_coco_then_check(tmp_path, capsys):
    out = tmp_path / "coco"
    assert main(["data", "synth", "--preset", "coco", "--videos", "5", "--size", "48x48", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == {"train": 4, "valid": 1} and (out / "images" / "coco_00004.jpg").is_file()
    assert main(["data", "check", str(out / "train.json"), "--images", str(out / "images")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "OK: COCO format, 4 images" in line and "(all frames decoded)" in line, line
    assert main(["data", "synth", "--preset", "coco", "--trio", "ytvis=8", "--out", str(out)]) == 2
