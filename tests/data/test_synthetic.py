"""The synthetic generator writes valid YouTube-VIS datasets: consistent JSON, decodable RLE, partial annotation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tmtvis.data.synthetic import (DOMAINS, FORMATS, PRESETS, QUERY_BUDGET, concept, concept_appearance, covers,
                                   generate, preset_categories)
from tmtvis.data.synthetic import _concept_index, _look, _own_only
from tmtvis.errors import ConfigError
from tmtvis.resources import vis_categories

SIZE = (48, 64)  # not square, so a swapped height/width shows


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for preset in PRESETS:
        out[preset] = tmp_path_factory.mktemp(preset)
        generate(out[preset], preset, videos=12, frames=4, size=SIZE, seed=7, val_fraction=0.25)
    return out


def load(root: Path, split: str) -> dict:
    return json.loads((root / f"{split}.json").read_text())


def fmt(preset: str) -> str:
    return FORMATS[PRESETS[preset].dataset]


def concepts(preset: str, classes: int | None = None) -> set[str]:
    return {concept(c["name"], fmt(preset)) for c in preset_categories(preset, classes)}


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("split", ["train", "valid"])
def test_official_format_is_consistent(datasets, preset, split):
    root = datasets[preset]
    d = load(root, split)
    assert set(d) == {"info", "licenses", "videos", "annotations", "categories"}
    assert [v["id"] for v in d["videos"]] == list(range(1, len(d["videos"]) + 1))
    assert [a["id"] for a in d["annotations"]] == list(range(1, len(d["annotations"]) + 1))
    cats = {c["id"]: c["name"] for c in d["categories"]}
    assert all(set(c) == {"id", "name", "supercategory"} for c in d["categories"])
    real = {c["id"]: c["name"] for c in vis_categories()[PRESETS[preset].dataset]}
    assert all(real[i] == name for i, name in cats.items())  # real ids and spellings
    videos = {v["id"]: v for v in d["videos"]}
    for v in d["videos"]:
        assert (v["height"], v["width"]) == SIZE and v["length"] == len(v["file_names"]) == 4
        for name in v["file_names"]:
            assert not Path(name).is_absolute() and ".." not in Path(name).parts
            with Image.open(root / "JPEGImages" / name) as im:
                assert im.format == "JPEG" and im.size == (v["width"], v["height"])
    for a in d["annotations"]:
        v = videos[a["video_id"]]
        assert a["category_id"] in cats and a["iscrowd"] == 0
        assert (a["height"], a["width"]) == (v["height"], v["width"])
        assert len(a["segmentations"]) == len(a["areas"]) == len(a["bboxes"]) == v["length"]
    assert d["annotations"], "every split should have some tracks"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_rle_decodes_to_areas_and_boxes(datasets, preset):
    d = load(datasets[preset], "train")
    for a in d["annotations"]:
        assert any(s is not None for s in a["segmentations"]), "a track is visible at least once"
        for seg, area, box in zip(a["segmentations"], a["areas"], a["bboxes"]):
            if seg is None:
                assert area is None and box is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == [a["height"], a["width"]]
            m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            assert m.shape == SIZE and int(m.sum()) == area > 0
            ys, xs = np.nonzero(m)
            assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_pixels_show_the_category_look(datasets, preset):
    """Inside a visible mask the frame mostly has the category's colour or accent under the preset's lighting
    (up to JPEG and jitter). Updated for issue 21: lighting per domain, coarse 'vehicle' drawn as car/bus/truck."""
    root = datasets[preset]
    d = load(root, "train")
    names = {c["id"]: c["name"] for c in d["categories"]}
    files = {v["id"]: v["file_names"] for v in d["videos"]}
    fractions = []
    light = DOMAINS[preset].lit
    for a in d["annotations"]:
        key = concept(names[a["category_id"]], fmt(preset))
        looks = [_look(k) for k in covers().get(key, [key])]  # a coarse category looks like a fine one it covers
        palette = np.array([light(c) for x in looks for c in (x.colour, x.accent)], np.float32)
        for f, seg in enumerate(a["segmentations"]):
            if seg is None or a["areas"][f] < 40:
                continue
            m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
            pixels = np.asarray(Image.open(root / "JPEGImages" / files[a["video_id"]][f]), np.float32)[m]
            dist = np.abs(pixels[:, None, :] - palette[None]).sum(-1).min(1)
            fractions.append(float((dist < 70).mean()))
    assert fractions and np.median(fractions) > 0.8


def test_same_arguments_give_identical_bytes(tmp_path):
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    for preset in PRESETS:
        a, b, c = tmp_path / f"{preset}_a", tmp_path / f"{preset}_b", tmp_path / f"{preset}_c"
        generate(a, preset, videos=3, frames=3, size=(32, 40), seed=1)
        generate(b, preset, videos=3, frames=3, size=(32, 40), seed=1)
        generate(c, preset, videos=3, frames=3, size=(32, 40), seed=2)
        assert files(a) == files(b)
        assert files(a) != files(c)
        assert not [p for p in a.rglob("*.tmp")]


def test_videos_do_not_depend_on_how_many_are_generated(tmp_path):
    generate(tmp_path / "few", "ytvis", videos=2, frames=2, size=(32, 32), val_fraction=0.0)
    generate(tmp_path / "many", "ytvis", videos=4, frames=2, size=(32, 32), val_fraction=0.0)
    for p in (tmp_path / "few" / "JPEGImages").rglob("*.jpg"):
        assert p.read_bytes() == (tmp_path / "many" / p.relative_to(tmp_path / "few")).read_bytes()


def test_split_is_by_video_with_the_fraction(datasets):
    for root in datasets.values():
        train, valid = load(root, "train"), load(root, "valid")
        assert (len(train["videos"]), len(valid["videos"])) == (9, 3)
        dirs = [{Path(v["file_names"][0]).parent.name for v in d["videos"]} for d in (train, valid)]
        assert not dirs[0] & dirs[1] and len(dirs[0] | dirs[1]) == 12
        assert train["categories"] == valid["categories"]


def test_zero_val_fraction_gives_empty_valid(tmp_path):
    s = generate(tmp_path, "ovis", videos=2, frames=2, size=(32, 32), val_fraction=0.0)
    assert s["videos"] == {"train": 2, "valid": 0}
    assert load(tmp_path, "valid")["videos"] == []


def test_other_presets_objects_appear_unannotated(datasets):
    """Updated for issue 21: the unannotated objects are the other presets' own-only classes (not any of theirs)."""
    own = {p: concepts(p) for p in PRESETS}
    for preset, root in datasets.items():
        infos = [load(root, s)["info"]["synthetic"] for s in ("train", "valid")]
        assert sum(i["unannotated_objects"] for i in infos) > 0
        drawn = {k for i in infos for k in i["unannotated_concepts"]}
        assert drawn and not drawn & own[preset]
        assert drawn <= set().union(*(own[p] & set(_own_only(p)) for p in PRESETS if p != preset))


def test_partial_annotation_follows_the_chosen_subsets(tmp_path):
    """With the study's 24/16/40 classes every other preset's chosen own-only class is a candidate foreign object
    (the defaults' subsets were used whatever --classes said), except what a coarse class of this preset covers."""
    trio = {"ytvis": 24, "ovis": 16, "uvo": 40}
    for preset in PRESETS:
        generate(tmp_path / preset, preset, videos=3, frames=1, size=(32, 32), classes=trio[preset], trio=trio,
                 foreign_rate=3.0)
        card = load(tmp_path / preset, "train")["info"]["synthetic"]["card"]
        mine = concepts(preset, trio[preset])
        covered = {f for c, fine in covers().items() if c in mine for f in fine}
        expected = set().union(*(concepts(p, trio[p]) & set(_own_only(p)) for p in PRESETS if p != preset))
        assert set(card["unannotated_concepts"]) == expected - covered - mine
        assert expected - set().union(*(concepts(p) for p in PRESETS))  # classes beyond the default subsets
    generate(tmp_path / "none", "ytvis", videos=4, frames=1, size=(32, 32), foreign_rate=0.0)
    assert load(tmp_path / "none", "train")["info"]["synthetic"]["unannotated_objects"] == 0


@pytest.mark.parametrize("preset", list(PRESETS))
def test_dataset_card_matches_what_was_drawn(datasets, preset):
    """The card in info['synthetic'] against the written annotations (counted here), the categories and looks."""
    from collections import Counter

    for split in ("train", "valid"):
        d = load(datasets[preset], split)
        info = d["info"]["synthetic"]
        card = info["card"]
        names = {c["id"]: c["name"] for c in d["categories"]}
        per_video = Counter(a["video_id"] for a in d["annotations"])
        assert card["annotated_tracks"] == len(d["annotations"])
        assert card["tracks_per_category"] == dict(Counter(names[a["category_id"]] for a in d["annotations"]))
        assert card["max_annotated_per_video"] == max(per_video.values())
        lo, hi = card["objects_per_video"]
        assert max(per_video.values()) <= hi <= 0.6 * card["query_budget"] and card["query_budget"] == QUERY_BUDGET
        assert card["annotated_concepts"] == [concept(c["name"], fmt(preset)) for c in d["categories"]]
        assert set(info["unannotated_concepts"]) <= set(card["unannotated_concepts"])
        assert card["unannotated_per_video"] == pytest.approx(info["unannotated_objects"] / len(d["videos"]), abs=1e-6)
        assert all(concept(k, fmt(preset)) == v for k, v in card["synonyms"].items())
        assert card["domain"]["gain"] == DOMAINS[preset].gain
        assert card["near_twins"] == []  # every drawn pair separable (shape or colour)
        assert card["coarse_fine"] == {"vehicle": ["car", "bus", "truck"]}
    assert {"ytvis": {"sedan": "car", "motorbike": "motorcycle"}, "ovis": {"Vehical": "vehicle"},
            "uvo": {}}[preset] == card["synonyms"]


def test_vehicle_is_coarse_over_car_and_the_taxonomy_says_so(datasets):
    from tmtvis.taxonomy import UnifiedTaxonomy

    ovis = load(datasets["ovis"], "train")
    assert "Vehical" in ovis["info"]["synthetic"]["card"]["tracks_per_category"]
    tax = UnifiedTaxonomy.build((p, fmt(p), load(r, "train")["categories"]) for p, r in datasets.items())
    assert tax.covers == {"vehicle": ["car", "bus"]}  # both kept as categories; truck is in no default subset
    assert {"vehicle", "car"} <= set(tax.names)


def test_each_preset_has_its_own_visual_domain(datasets):
    """Mean frame brightness and blue-red balance tell the presets apart (a clip reveals its source)."""
    def stats(preset: str) -> tuple[float, float]:
        root = datasets[preset]
        px = np.concatenate([np.asarray(Image.open(p), np.float32).reshape(-1, 3)
                             for p in sorted((root / "JPEGImages").rglob("*.jpg"))])
        return float(px.mean()), float((px[:, 2] - px[:, 0]).mean())

    (y_mean, y_blue), (o_mean, o_blue), (u_mean, u_blue) = (stats(p) for p in ("ytvis", "ovis", "uvo"))
    assert o_mean < y_mean - 30 and o_mean < u_mean - 20  # OVIS dim
    assert u_blue > y_blue + 10 and u_blue > o_blue + 10  # UVO cool


def test_used_concepts_have_separable_looks():
    from tmtvis.data.shapes import appearance, separable

    looks = [appearance(i) for i in range(80)]
    assert all(separable(a, b) for i, a in enumerate(looks) for b in looks[:i])
    for trio in ({}, {"ytvis": 24, "ovis": 16, "uvo": 40}):  # the defaults and the study's subsets
        used = set().union(*(concepts(p, trio.get(p)) for p in PRESETS))
        assert max(_concept_index()[k] for k in used | {"car", "truck", "bus"}) < 80
    # Beyond 80 concepts a (shape, colour) pair repeats: the card declares such pairs instead.
    from tmtvis.data.synthetic import near_twins

    assert near_twins(list(_concept_index())[:81]) == [[list(_concept_index())[0], list(_concept_index())[80]]]


def test_ovis_occludes_more_and_uvo_is_denser(datasets):
    occlusion = {p: load(r, "train")["info"]["synthetic"]["mean_occlusion"] for p, r in datasets.items()}
    assert occlusion["ovis"] > occlusion["ytvis"] + 0.1
    density = {}
    for p, r in datasets.items():
        info = load(r, "train")["info"]["synthetic"]
        density[p] = info["objects_drawn"] / len(load(r, "train")["videos"])
    assert density["uvo"] > density["ovis"] > density["ytvis"]


def test_taxonomies_overlap_and_each_has_its_own():
    sets = {p: concepts(p) for p in PRESETS}
    assert [len(sets[p]) for p in PRESETS] == [PRESETS[p].classes for p in PRESETS]
    assert {"person", "dog", "cat"} <= sets["ytvis"] & sets["ovis"] & sets["uvo"]
    assert "car" in sets["ytvis"] & sets["uvo"]  # ytvis 'sedan' is uvo 'car'
    for p in PRESETS:
        others = set().union(*(sets[q] for q in PRESETS if q != p))
        assert sets[p] - others, f"{p} has no category of its own"
    assert len(preset_categories("uvo", 81)) == 81 and len(preset_categories("ytvis", 3)) == 3
    assert preset_categories("ovis", 4) == preset_categories("ovis", 4)


def test_same_concept_same_look_and_distinct_looks_within_a_preset():
    assert concept("sedan") == concept("car") and concept("Motorcycle") == concept("motorbike")
    assert concept("Giant_panda") == concept("giant_panda") == "giant panda"
    assert concept_appearance("sedan") == concept_appearance("car")
    assert concept_appearance("Motorcycle", "ovis") == concept_appearance("motorbike")
    assert concept("Vehical", "ovis") == "vehicle" != concept("car")
    assert concept_appearance("mouse", "uvo") != concept_appearance("mouse", "ytvis")  # device vs animal
    for p in PRESETS:
        looks = [concept_appearance(c["name"], fmt(p)) for c in preset_categories(p)]
        assert len({(x.shape, x.colour) for x in looks}) == len(looks)


@pytest.mark.parametrize("kwargs", [{"preset": "kitti"}, {"classes": 0}, {"classes": 41}, {"videos": 0},
                                    {"val_fraction": 1.0}, {"size": (8, 8)}])
def test_bad_arguments_raise_config_error(tmp_path, kwargs):
    args = {"preset": "ytvis", "videos": 1, "frames": 1, "size": (32, 32)} | kwargs
    with pytest.raises(ConfigError):
        generate(tmp_path, **args)


def test_unified_taxonomy_merges_the_shared_concepts(datasets):
    from tmtvis.taxonomy import UnifiedTaxonomy

    tax = UnifiedTaxonomy.build((p, fmt(p), load(r, "train")["categories"]) for p, r in datasets.items())
    union = set().union(*(concepts(p) for p in PRESETS))
    assert sorted(tax.names) == sorted(union)
    assert len(tax) < sum(p.classes for p in PRESETS.values())
    for name, sources in zip(tax.names, tax.sources):
        assert {p for p in PRESETS if name in concepts(p)} == set(sources)
