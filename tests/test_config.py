import pytest

from vidssl.config import ConfigError, load_config
from vidssl.methods.base import method_config


def test_defaults_yaml_and_overrides_merge(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("data:\n  root: /videos\ntrainer:\n  batch_size: 8\n")
    child = tmp_path / "child.yaml"
    child.write_text("defaults: [base.yaml]\ntrainer:\n  max_steps: 5\n")
    cfg = load_config([child], ["trainer.batch_size=4", "augment.scale=[0.5,1.0]"])
    assert cfg.data.root == "/videos"
    assert cfg.trainer.batch_size == 4 and cfg.trainer.max_steps == 5
    assert list(cfg.augment.scale) == [0.5, 1.0]


@pytest.mark.parametrize("override,needle", [
    ("data.rooot=/x", "data.rooot"),
    ("trainer.batch_size=many", "trainer.batch_size"),
    ("nonsense", "key=value"),
])
def test_bad_override_names_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config([], ["data.root=/x", override])


def test_missing_required_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        load_config([], [])
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config([tmp_path / "nope.yaml"])


def test_wrong_key_in_yaml_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.learning_rate"):
        load_config([bad], ["data.root=/x"])


def test_method_section_validated_by_the_method():
    cfg = method_config("moco", {"name": "moco", "queue_size": 128})
    assert cfg.queue_size == 128 and cfg.temperature == 0.2
    with pytest.raises(ConfigError, match="method.*queue"):
        method_config("moco", {"name": "moco", "queue": 128})
    with pytest.raises(KeyError, match="unknown method"):
        method_config("no-such-method", {})


def test_csv_dataset_needs_data_csv_and_its_root_defaults_to_the_csv_folder():
    with pytest.raises(ConfigError, match=r"data\.csv: required when data\.dataset=csv"):
        load_config([], ["data.dataset=csv"])
    assert load_config([], ["data.dataset=csv", "data.csv=/a/b/train.csv"]).data.root == "/a/b"
    assert load_config([], ["data.dataset=csv", "data.csv=/a/b/train.csv", "data.root=/v"]).data.root == "/v"
    with pytest.raises(ConfigError, match="data.root"):  # every other dataset still needs its root
        load_config([], ["data.dataset=folder"])
    cfg = load_config([], ["data.root=/v", "data.dataset=folder", "data.test_fraction=0.2", "data.split_seed=3"])
    assert cfg.data.test_fraction == 0.2 and cfg.data.split_seed == 3 and cfg.data.test_root is None
