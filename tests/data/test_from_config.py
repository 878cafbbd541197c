"""The catalogs a config's ``data:`` section names: test lists of folder and CSV datasets."""
import json
import warnings
from pathlib import Path

import pytest

from vidssl.config import ConfigError, DataConfig, load_config
from vidssl.data.from_config import SPLIT_FILE, catalog_from_config, evaluation_catalogs


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_folder(root, per_class=5):
    for cls in ("run", "walk"):
        for i in range(per_class):
            touch(root / cls / f"{cls}{i}.mp4")
    return root


def paths(catalog):
    return {r.path for r in catalog.records}


def test_folder_or_csv_without_test_list_is_an_error_not_a_self_match(tmp_path):
    data = DataConfig(dataset="folder", root=str(make_folder(tmp_path / "videos")))
    assert len(catalog_from_config(data, "train")) == 10  # pretraining: every video
    with pytest.raises(ConfigError, match="no test list.*data.test_root.*data.test_fraction"):
        catalog_from_config(data, "test")
    (tmp_path / "all.csv").write_text("path,label\nvideos/run/run0.mp4,run\nvideos/walk/walk0.mp4,walk\n")
    with pytest.raises(ConfigError, match="no test list.*data.test_csv"):
        evaluation_catalogs(DataConfig(dataset="csv", root=str(tmp_path), csv=str(tmp_path / "all.csv")))


def test_test_root_and_test_csv_are_the_test_lists(tmp_path):
    make_folder(tmp_path / "train")
    touch(tmp_path / "test" / "walk" / "w.mp4")
    lists = evaluation_catalogs(DataConfig(dataset="folder", root=str(tmp_path / "train"),
                                           test_root=str(tmp_path / "test")))
    (train, test), = lists.values()
    assert list(lists) == ["test"] and len(train) == 10 and test.labels().tolist() == [1]
    (tmp_path / "train.csv").write_text("path,label\n" + "".join(f"train/walk/walk{i}.mp4,walk\n" for i in range(5))
                                        + "train/run/run0.mp4,run\n")
    (tmp_path / "test.csv").write_text("path,label\ntest/walk/w.mp4,walk\n")
    data = DataConfig(dataset="csv", csv=str(tmp_path / "train.csv"), test_csv=str(tmp_path / "test.csv"),
                      root=str(tmp_path))
    assert catalog_from_config(data, "test").labels().tolist() == [1]  # "walk" is class 1 of the train CSV
    with pytest.raises(ConfigError, match="data.test_root"):
        catalog_from_config(DataConfig(dataset="csv", csv=str(tmp_path / "train.csv"), root=str(tmp_path),
                                       test_root=str(tmp_path)), "test")
    with pytest.raises(ConfigError, match="data.test_fraction.*ucf101"):
        catalog_from_config(DataConfig(dataset="ucf101", root=str(tmp_path), test_fraction=0.2), "test")


def test_test_fraction_split_is_saved_in_the_run_and_reused(tmp_path):
    root = make_folder(tmp_path / "videos")
    data = DataConfig(dataset="folder", root=str(root), test_fraction=0.4, split_seed=3)
    split_file = tmp_path / "run" / SPLIT_FILE
    train = catalog_from_config(data, "train", split_file=split_file)  # what pretraining does
    saved = json.loads(split_file.read_text())
    assert len(saved["train"]) == len(train) == 6 and len(saved["test"]) == 4
    assert saved["test_fraction"] == 0.4 and saved["split_seed"] == 3
    (train_again, test), = evaluation_catalogs(data, split_file=split_file).values()
    assert paths(train_again) == paths(train) and not paths(train) & paths(test)
    assert sorted(Path(p).relative_to(root.resolve()).as_posix() for p in paths(test)) == sorted(saved["test"])
    # A video added after pretraining is in neither side; the saved split wins.
    touch(root / "run" / "new.mp4")
    with pytest.warns(UserWarning, match="1 videos are not in the split"):
        (_, test_later), = evaluation_catalogs(data, split_file=split_file).values()
    assert paths(test_later) == paths(test)
    # Asking another split of a run that trained on this one is an error, not a silent leak.
    other = DataConfig(dataset="folder", root=str(root), test_fraction=0.5, split_seed=3)
    with pytest.raises(ConfigError, match="test_fraction"):
        evaluation_catalogs(other, split_file=split_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(catalog_from_config(other, "test")) == 5  # no run: computed (half of 6 + 5), not saved
    # Evaluating a run whose pretraining saved no split: said, then saved.
    with pytest.warns(UserWarning, match="may have trained on"):
        evaluation_catalogs(other, split_file=tmp_path / "old-run" / SPLIT_FILE)
    assert (tmp_path / "old-run" / SPLIT_FILE).is_file()


def test_csv_dataset_needs_its_csv_and_its_root_defaults_to_the_csv_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.csv: required"):
        catalog_from_config(DataConfig(dataset="csv", root=str(tmp_path)), "train")
    touch(tmp_path / "ann" / "clips" / "a.mp4")
    (tmp_path / "ann" / "train.csv").write_text("path,label\nclips/a.mp4,0\n")
    cfg = load_config([], ["data.dataset=csv", f"data.csv={tmp_path / 'ann' / 'train.csv'}"])
    assert cfg.data.root == str(tmp_path / "ann")
    assert catalog_from_config(cfg.data, "train").paths() == [str((tmp_path / "ann" / "clips" / "a.mp4").resolve())]
