import pytest

from tmtvis.errors import DataError
from tmtvis.resources import vis_categories
from tmtvis.taxonomy import UnifiedTaxonomy, canonical_name, normalize_name

FORMATS = {"ytvis_2019": "ytvis", "ytvis_2021": "ytvis", "ovis": "ovis", "uvo_dense": "uvo"}


@pytest.fixture(scope="module")
def union() -> UnifiedTaxonomy:
    return UnifiedTaxonomy.build([(k, FORMATS[k], cats) for k, cats in vis_categories().items()])


def test_normalisation():
    assert normalize_name("Giant_panda") == "giant panda"
    assert normalize_name("  tennis_racket ") == "tennis racket"
    assert canonical_name("Person") == "person"
    assert canonical_name("motorbike") == canonical_name("Motorcycle", "ovis") == "motorcycle"
    assert canonical_name("flying_disc") == "frisbee"
    assert canonical_name("Vehical", "ovis") == "vehicle"


def test_union_of_the_four_real_lists(union):
    names = union.names
    assert len(names) == len(set(names)) == 106
    for name in ("person", "giant panda", "tennis racket", "motorcycle", "car", "frisbee", "vehicle",
                 "poultry", "computer mouse", "mouse", "other"):
        assert name in names, name
    for merged_away in ("motorbike", "sedan", "flying disc", "vehical", "Person", "giant_panda"):
        assert merged_away not in names
    srcs = dict(zip(names, union.sources))
    assert srcs["person"] == ["ytvis_2019", "ytvis_2021", "ovis", "uvo_dense"]
    assert srcs["car"] == ["ytvis_2019", "ytvis_2021", "uvo_dense"]  # sedan (19), car (21), car (uvo)
    assert srcs["motorcycle"] == ["ytvis_2019", "ytvis_2021", "ovis", "uvo_dense"]
    assert srcs["frisbee"] == ["ytvis_2021", "uvo_dense"]
    assert srcs["mouse"] == ["ytvis_2019", "ytvis_2021"] and srcs["computer mouse"] == ["uvo_dense"]
    assert srcs["vehicle"] == ["ovis"] and srcs["poultry"] == ["ovis"]


def test_id_maps_are_inverse_and_complete(union):
    for name, cats in vis_categories().items():
        labels = union.datasets[name]
        assert len(labels.to_unified) == len(cats)
        for c in cats:
            uid = labels.to_unified[c["id"]]
            assert labels.from_unified[uid] == c["id"]
            assert union.names[uid] == canonical_name(c["name"], FORMATS[name])
    ovis = union.datasets["ovis"]
    assert union.names[ovis.to_unified[22]] == "motorcycle"  # OVIS 'Motorcycle'
    assert union.datasets["uvo_dense"].to_unified[91] == union.names.index("other")


def test_save_load_roundtrip(union, tmp_path):
    union.save(tmp_path / "t.json")
    back = UnifiedTaxonomy.load(tmp_path / "t.json")
    assert back.names == union.names and back.sources == union.sources
    for name, d in union.datasets.items():
        assert back.datasets[name].to_unified == d.to_unified
        assert back.datasets[name].from_unified == d.from_unified
        assert back.datasets[name].unified_ids == d.unified_ids


def test_two_categories_merging_in_one_dataset_is_an_error():
    with pytest.raises(DataError, match="merges with category 1"):
        UnifiedTaxonomy.build([("d", "ytvis", [{"id": 1, "name": "motorbike"}, {"id": 2, "name": "Motorcycle"}])])


def test_splits_of_one_dataset_share_labels_but_must_agree():
    cats = [{"id": 1, "name": "dog"}]
    tax = UnifiedTaxonomy.build([("d", "ytvis", cats), ("d", "ytvis", cats)])
    assert tax.names == ["dog"]
    with pytest.raises(DataError, match="different category lists"):
        UnifiedTaxonomy.build([("d", "ytvis", cats), ("d", "ytvis", [{"id": 1, "name": "cat"}])])
