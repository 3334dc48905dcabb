"""Model registry and the offline models on real faces."""

import numpy as np
import pytest

from facesearch.errors import UnknownModelError, WeightsMissingError
from facesearch.imaging.decode import load_image
from facesearch.models.registry import MODELS, OFFLINE_MODELS, get_model, list_models
from facesearch.embedding.pipeline import Pipeline


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError) as e:
        get_model("resnet-9000")
    for n in ("sface", "dlib", "facenet-casia", "ArcFace", "MobileNetV2"):
        assert n in str(e.value)


def test_registry_describes_every_model():
    infos = {m["name"]: m for m in list_models()}
    assert set(infos) == set(MODELS)
    assert infos["dlib"]["dim"] == 128 and infos["facenet-casia"]["dim"] == 512 and infos["sface"]["dim"] == 128
    assert infos["VGG-Face"]["dim"] == 4096 and infos["MobileNetV2"]["family"] == "generic"
    for n in OFFLINE_MODELS:
        assert infos[n]["ready"], infos[n]
    assert all(m["metric"] == "cosine" for m in infos.values())


@pytest.mark.parametrize("model", OFFLINE_MODELS)
def test_offline_models_embed_unit_vectors_that_separate_people(data_dir, model, own_settings):
    """Own empty cache and weights folder: every vector here is computed by the model (for
    dlib, from the weights copied out of face-recognition-models into that folder)."""
    pipe = Pipeline(model, "yunet", own_settings)
    people = data_dir / "photos/people"
    found = [pipe.analyze(people / rel) for rel in ("obama/obama.jpg", "obama/obama2.jpg", "biden/biden.jpg")]
    assert [a.cached for a in found] == [False] * 3
    a1, a2, b = (a.faces[0].embedding for a in found)
    for v in (a1, a2, b):
        assert v.dtype == np.float32 and v.shape == (get_model(model).dim,)
        assert abs(np.linalg.norm(v) - 1) < 1e-4
    same, diff = 1 - a1 @ a2, 1 - a1 @ b
    thr = get_model(model).threshold
    assert same < thr < diff
    # The second time the same photo is served from the cache, with the same vector.
    again = pipe.analyze(people / "obama/obama.jpg")
    assert again.cached and np.allclose(again.faces[0].embedding, a1, atol=1e-6)


def test_detect_crop_embed_are_separate_steps(data_dir, settings):
    """detect, crops and embed called one by one: no embedding cache is involved."""
    pipe = Pipeline("dlib", "mtcnn", settings)
    rgb = load_image(data_dir / "photos/group/obama_and_biden.jpg").rgb
    faces = pipe.detect(rgb)
    chips = pipe.crops(rgb, faces)
    assert [c.shape for c in chips] == [(150, 150, 3)] * 3
    vecs = pipe.embed(chips)
    assert vecs.shape == (3, 128)
    assert pipe.embed([]).shape == (0, 128)


def test_missing_weights_offline_is_one_clear_error(tmp_path, monkeypatch, no_network):
    """ArcFace with an empty weights folder and every connection to another machine
    refused in this process: one WeightsMissingError naming the file and the folder, on
    any machine, network or not."""
    from facesearch.settings import Settings

    s = Settings(home=tmp_path)
    # Loading a DeepFace model points DEEPFACE_HOME at its folder; give it back afterwards.
    monkeypatch.setenv("DEEPFACE_HOME", str(s.deepface_home))
    assert not s.weights_path.exists()  # an empty data folder: no weights in it
    with pytest.raises(WeightsMissingError) as e:
        get_model("ArcFace", s).embed([np.zeros((112, 112, 3), np.uint8)])
    assert no_network, "DeepFace never tried to download the weights"
    msg = str(e.value)
    assert "arcface_weights.h5" in msg and str(s.weights_path) in msg
    # Nothing half-written is left to be mistaken for weights next time.
    assert not any(s.weights_path.glob("arcface*"))
    ready, detail = get_model("ArcFace", s).status()
    assert not ready and "arcface_weights.h5" in detail
