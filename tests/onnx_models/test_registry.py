"""Registry, input checks against the card, the card in metadata, reproducible builds."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import onnx
import pytest

import onnx_models
from onnx_models import (
    InputError,
    LoadedModel,
    MissingInputsError,
    ModelCard,
    ModelError,
    ModelFileError,
    ModelRegistry,
    OutOfRangeError,
    UnknownModelError,
    describe,
    list_models,
)
from onnx_models.build import build_all
from onnx_models.build import pce as pce_module
from onnx_models.build.__main__ import main as build_main

ARTIFACTS = Path(onnx_models.__file__).parent / "artifacts"
ARTIFACT = ARTIFACTS / "pce.onnx"
MODEL_IDS = ["pce", "prevent", "prevent_30y", "kfre", "kfre_non_na", "whas500_mortality"]
GOOD = {
    "age_years": 61.0,
    "female": 0.0,
    "african_american": 1.0,
    "total_cholesterol_mg_dl": 240.0,
    "hdl_cholesterol_mg_dl": 38.0,
    "systolic_bp_mm_hg": 148.0,
    "treated_hypertension": 1.0,
    "current_smoker": 0.0,
    "diabetes": 1.0,
}


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load()


@pytest.fixture(scope="module")
def pce(registry: ModelRegistry) -> LoadedModel:
    return registry.get("pce")


def test_registry_loads_committed_artifacts(registry: ModelRegistry, pce: LoadedModel) -> None:
    """The default registry serves pce from the package's artifacts, hashed from its bytes."""
    assert registry.ids() == sorted(MODEL_IDS)
    assert pce.path == ARTIFACT
    assert pce.sha256 == hashlib.sha256(ARTIFACT.read_bytes()).hexdigest()
    assert pce.version == "1.0.0"


def test_unknown_model(registry: ModelRegistry) -> None:
    """An unknown id names itself and the known ones."""
    known = ", ".join(sorted(MODEL_IDS))
    with pytest.raises(UnknownModelError, match=rf"no model 'score2'; known models: {known}$"):
        registry.get("score2")


def test_missing_inputs_are_named(pce: LoadedModel) -> None:
    """Absent, None and NaN inputs are all missing, named in card order."""
    values: dict[str, float | None] = dict(GOOD)
    del values["total_cholesterol_mg_dl"]
    values["hdl_cholesterol_mg_dl"] = None
    values["systolic_bp_mm_hg"] = math.nan
    with pytest.raises(MissingInputsError) as info:
        pce.predict(values)
    assert info.value.names == (
        "total_cholesterol_mg_dl",
        "hdl_cholesterol_mg_dl",
        "systolic_bp_mm_hg",
    )
    assert str(info.value) == (
        "pce needs total_cholesterol_mg_dl, hdl_cholesterol_mg_dl, systolic_bp_mm_hg; not available"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"age_years": 35.0}, "age_years = 35 years is outside 40\u201379 for pce"),
        ({"age_years": 80.0}, "age_years = 80 years is outside 40\u201379 for pce"),
        (
            {"hdl_cholesterol_mg_dl": 101.5},
            "hdl_cholesterol_mg_dl = 101.5 mg/dL is outside 20\u2013100 for pce",
        ),
        (
            {"systolic_bp_mm_hg": math.inf},
            "systolic_bp_mm_hg = inf mm[Hg] is outside 90\u2013200 for pce",
        ),
        ({"current_smoker": 0.5}, "current_smoker = 0.5 is not 0 or 1 for pce"),
        ({"female": 2.0}, "female = 2 is not 0 or 1 for pce"),
        (
            {"age_years": 39.0, "total_cholesterol_mg_dl": 400.0, "diabetes": -1.0},
            "age_years = 39 years is outside 40\u201379 for pce; "
            "total_cholesterol_mg_dl = 400 mg/dL is outside 130\u2013320 for pce; "
            "diabetes = -1 is not 0 or 1 for pce",
        ),
    ],
)
def test_out_of_range_inputs_are_named_with_range(
    pce: LoadedModel, changes: dict[str, float], message: str
) -> None:
    """Each out-of-range input is named with its value, unit and the valid range."""
    with pytest.raises(OutOfRangeError) as info:
        pce.predict(GOOD | changes)
    assert str(info.value) == message
    assert [v.name for v in info.value.violations] == list(changes)


def test_range_edges_are_accepted(pce: LoadedModel) -> None:
    """The bounds themselves are valid inputs."""
    pce.check_inputs(GOOD | {"age_years": 40.0, "systolic_bp_mm_hg": 200.0})
    pce.check_inputs(GOOD | {"age_years": 79.0, "hdl_cholesterol_mg_dl": 20.0})


def test_error_hierarchy() -> None:
    """Input errors are ModelErrors; file and id errors are not input errors."""
    assert issubclass(MissingInputsError, InputError)
    assert issubclass(OutOfRangeError, InputError)
    assert issubclass(InputError, ModelError)
    assert not issubclass(UnknownModelError, InputError)
    assert not issubclass(ModelFileError, InputError)


def test_card_round_trips_through_metadata(pce: LoadedModel) -> None:
    """The card read back from the file equals the one the build script wrote."""
    model = onnx.load(ARTIFACT)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["model_id"] == "pce"
    assert props["model_version"] == "1.0.0"
    assert ModelCard.from_json(props["model_card"]) == pce_module.card()
    assert pce.card == pce_module.card()
    loinc = {spec.name: spec.loinc for spec in pce.card.inputs}
    assert loinc["total_cholesterol_mg_dl"] == "2093-3"
    assert loinc["hdl_cholesterol_mg_dl"] == "2085-9"
    assert loinc["systolic_bp_mm_hg"] == "8480-6"
    assert loinc["current_smoker"] == "72166-2"


def test_graph_is_float64_throughout() -> None:
    """Input, output and every constant are DOUBLE (float32 cannot hold 1e-6 on these sums)."""
    model = onnx.load(ARTIFACT)
    double = onnx.TensorProto.DOUBLE
    assert model.graph.input[0].type.tensor_type.elem_type == double
    assert model.graph.output[0].type.tensor_type.elem_type == double
    assert {t.data_type for t in model.graph.initializer} <= {double, onnx.TensorProto.INT64}


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    """Two builds and every committed artifact have one sha256 per model."""
    first = build_all(tmp_path / "one")
    second = build_all(tmp_path / "two")
    assert [b.model_id for b in first] == MODEL_IDS
    committed = [
        hashlib.sha256((ARTIFACTS / f"{m}.onnx").read_bytes()).hexdigest() for m in MODEL_IDS
    ]
    assert [b.sha256 for b in first] == [b.sha256 for b in second] == committed
    for model_id in MODEL_IDS:
        built = (tmp_path / "one" / f"{model_id}.onnx").read_bytes()
        assert built == (ARTIFACTS / f"{model_id}.onnx").read_bytes(), model_id


def test_build_cli_prints_json(tmp_path: Path) -> None:
    """`python -m onnx_models.build --out DIR` writes the files and prints id and sha256."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert build_main(["--out", str(tmp_path)]) == 0
    printed = json.loads(out.getvalue())
    assert printed == [
        {
            "id": model_id,
            "version": "1.0.0",
            "path": str(tmp_path / f"{model_id}.onnx"),
            "sha256": hashlib.sha256((tmp_path / f"{model_id}.onnx").read_bytes()).hexdigest(),
        }
        for model_id in MODEL_IDS
    ]


def test_describe_and_list_are_json(registry: ModelRegistry, pce: LoadedModel) -> None:
    """describe and list_models give JSON-serialisable views with the artifact's hash."""
    described = json.loads(json.dumps(describe(pce)))
    assert described["sha256"] == pce.sha256
    assert described["card"]["inputs"][0]["name"] == "age_years"
    assert described["card"]["baseline"]["values"]["age_years"] == 55.0
    listed = json.loads(json.dumps(list_models(registry)))
    assert [m["id"] for m in listed] == sorted(MODEL_IDS)
    assert listed[sorted(MODEL_IDS).index("pce")] == {
        "id": "pce",
        "name": pce.card.name,
        "version": "1.0.0",
        "sha256": pce.sha256,
        "outputs": ["risk_10y_ascvd"],
    }


def test_every_shipped_card_loads_strictly() -> None:
    """Each packaged model's card reads back, field for field, through the strict reader."""
    for model_id in MODEL_IDS:
        card = ModelRegistry.load().get(model_id).card
        assert ModelCard.from_dict(json.loads(card.to_json())) == card


def _pce_card_with(change: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pce_module.card().to_json())
    change(data)
    return data


BAD_CARDS: list[tuple[str, Any, str]] = [
    ("unknown key", lambda d: d.update(colour="red"), r"colour: Unexpected keyword"),
    (
        "unknown key of an input",
        lambda d: d["inputs"][0].update(units="years"),
        r"inputs\.0\.units: Unexpected keyword",
    ),
    ("number as text", lambda d: d["inputs"][2].update(min="30"), r"inputs\.2\.min: .*number"),
    ("id as number", lambda d: d.update(id=7), r"^model card is not valid: id: .*string"),
    ("unknown kind", lambda d: d["inputs"][0].update(kind="ordinal"), r"inputs\.0\.kind: "),
    ("field missing", lambda d: d.pop("license"), r"license: Field required"),
    (
        "baseline value as text",
        lambda d: d["baseline"]["values"].update(age_years="55"),
        r"baseline\.values\.age_years: ",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"), [b[1:] for b in BAD_CARDS], ids=[b[0] for b in BAD_CARDS]
)
def test_a_bad_card_is_refused_naming_the_field(change: Any, message: str) -> None:
    """A card with an unknown key or a wrong type is a ModelFileError naming the field."""
    with pytest.raises(ModelFileError, match=message):
        ModelCard.from_dict(_pce_card_with(change))


def test_registry_refuses_file_without_card(tmp_path: Path) -> None:
    """An .onnx without our card is a ModelFileError naming the file, not a crash."""
    model = onnx.load(ARTIFACT)
    del model.metadata_props[:]
    (tmp_path / "bare.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelFileError, match=r"bare\.onnx: no 'model_card'"):
        ModelRegistry.load(tmp_path)


def test_registry_refuses_garbage_file(tmp_path: Path) -> None:
    """Bytes that are not ONNX are a ModelFileError."""
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"junk\.onnx"):
        ModelRegistry.load(tmp_path)


def test_empty_directory_gives_empty_registry(tmp_path: Path) -> None:
    """A directory without models loads as an empty registry."""
    assert ModelRegistry.load(tmp_path).ids() == []


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and names exactly the public names the package imports."""
    assert onnx_models.__all__ == sorted(onnx_models.__all__)
    tree = ast.parse(Path(onnx_models.__file__).read_text())
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert set(onnx_models.__all__) == imported


def test_never_imports_service_or_twin_engine() -> None:
    """onnx_models imports neither cds_service nor twin_engine (architecture.md)."""
    package = Path(onnx_models.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"cds_service", "twin_engine"}, (path, name)
