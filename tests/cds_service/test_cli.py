"""The twin-cds command line: JSON on stdout, exit 2 with a message for bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import with_ids
from tests.support.cli import twin_cds


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return twin_cds(*args)


def _write(tmp_path: Path, data: Any, name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _complete_patient(demo_bundles: list[dict[str, Any]]) -> dict[str, Any]:
    for b in demo_bundles:
        codes = {
            c["code"]
            for e in b["entry"]
            if e["resource"]["resourceType"] == "Observation"
            for c in e["resource"]["code"]["coding"]
        }
        if {"2093-3", "2085-9", "85354-9"} <= codes:
            return with_ids(b)
    raise AssertionError("no generated patient with lipids and BP")


def test_predict_prints_the_json_contract(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """predict pce prints model, version, sha256, outputs, inputs, explanation, missing."""
    bundle = _write(tmp_path, _complete_patient(demo_bundles))
    result = _run("predict", "pce", "--bundle", str(bundle), "--as-of", "2026-02-01")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"model", "version", "sha256", "outputs", "inputs", "explanation", "missing"} <= set(out)
    assert out["model"] == "pce"
    risk = out["outputs"]["risk_10y_ascvd"]
    assert 0 < risk < 1
    contributions = sum(e["contribution"] for e in out["explanation"])
    assert contributions == pytest.approx(
        risk - out["baseline"]["outputs"]["risk_10y_ascvd"], abs=1e-9
    )
    assert {e["feature"] for e in out["explanation"]} <= {i["name"] for i in out["inputs"]}


def test_predict_names_missing_inputs_and_exits_2(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """Without a lipid panel the exit code is 2 and stderr names the missing inputs."""
    bundle = _complete_patient(demo_bundles)
    bundle["entry"] = [
        e
        for e in bundle["entry"]
        if not any(
            c["code"] in ("2093-3", "2085-9")
            for c in e["resource"].get("code", {}).get("coding", [])
        )
    ]
    result = _run("predict", "pce", "--bundle", str(_write(tmp_path, bundle)))
    assert result.returncode == 2
    assert "total_cholesterol_mg_dl" in result.stderr
    assert "hdl_cholesterol_mg_dl" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "is not JSON", id="not-json"),
        pytest.param(
            json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}),
            "no Patient resource in the bundle",
            id="no-patient",
        ),
        pytest.param(json.dumps([1, 2, 3]), "no Patient resource in the bundle", id="array"),
    ],
)
def test_bad_bundles_exit_2(tmp_path: Path, content: str, message: str) -> None:
    """Malformed JSON or a bundle without a Patient: exit 2 and a message, no traceback."""
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = _run("twin", "build", "--bundle", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_and_bad_date_exit_2(tmp_path: Path) -> None:
    """A file that does not exist and an impossible --as-of are bad input."""
    assert _run("twin", "build", "--bundle", str(tmp_path / "nope.json")).returncode == 2
    good = _write(tmp_path, {"resourceType": "Patient", "id": "p", "gender": "male"})
    result = _run("twin", "build", "--bundle", str(good), "--as-of", "2026-13-40")
    assert result.returncode == 2
    assert "--as-of" in result.stderr


def test_twin_build_prints_features_with_provenance(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """twin build shows each feature's value, time, sources and quality."""
    bundle = _complete_patient(demo_bundles)
    result = _run(
        "twin", "build", "--bundle", str(_write(tmp_path, bundle)), "--as-of", "2026-02-01"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    tc = out["features"]["total_cholesterol_mg_dl"]
    assert tc["quality"] == "ok"
    assert tc["sources"][0].startswith("Observation/")
    assert len(out["contentHash"]) == 64


def test_models_list_and_describe(tmp_path: Path) -> None:
    """models list names pce; describe prints its card with inputs, LOINC and sha256."""
    listed = json.loads(_run("models", "list").stdout)
    assert "pce" in {m["id"] for m in listed}
    described = _run("models", "describe", "pce")
    card = json.loads(described.stdout)
    assert len(card["sha256"]) == 64
    tc = next(i for i in card["card"]["inputs"] if i["name"] == "total_cholesterol_mg_dl")
    assert tc["loinc"] == "2093-3"
    unknown = _run("models", "describe", "nope")
    assert unknown.returncode == 2
    assert "nope" in unknown.stderr


def test_models_list_and_describe_name_the_pk_models() -> None:
    """models list names every vancomycin PK graph with its card's version and the
    file's sha256; describe prints its PK card."""
    import hashlib

    from onnx_models.pk.models import MODELS
    from onnx_models.registry import ARTIFACTS_DIR

    listed = {m["id"]: m for m in json.loads(_run("models", "list").stdout)}
    for model_id, model in MODELS.items():
        sha = hashlib.sha256((ARTIFACTS_DIR / "pk" / f"{model_id}.onnx").read_bytes()).hexdigest()
        assert (listed[model_id]["version"], listed[model_id]["sha256"]) == (model.version, sha)
    described = _run("models", "describe", "vancomycin_goti2018")
    assert described.returncode == 0, described.stderr
    card = json.loads(described.stdout)["card"]
    assert (card["id"], card["kind"]) == ("vancomycin_goti2018", "population_pk")


def test_models_build_is_reproducible(tmp_path: Path) -> None:
    """A rebuild gives byte-identical files to the packaged ones, risk and PK models alike."""
    import hashlib

    from onnx_models.registry import ARTIFACTS_DIR

    built = json.loads(_run("models", "build", "--out", str(tmp_path)).stdout)
    assert {"pce", "vancomycin_goti2018"} <= {b["id"] for b in built}
    for b in built:
        rebuilt = Path(b["path"])
        packaged = ARTIFACTS_DIR / rebuilt.relative_to(tmp_path)
        assert hashlib.sha256(packaged.read_bytes()).hexdigest() == b["sha256"], b["id"]


def _vanco_bundle(tmp_path: Path, *, dialysis: bool | None = False) -> Path:
    from tests.support.vancomycin import base_record

    entries = [{"resource": r} for r in base_record(dialysis=dialysis)]
    return _write(tmp_path, {"resourceType": "Bundle", "type": "collection", "entry": entries})


def test_dose_vancomycin_prints_the_dosing_contract(tmp_path: Path) -> None:
    """dose vancomycin prints covariates, individual parameters, levels, AUC and advice."""
    bundle = _vanco_bundle(tmp_path)
    result = _run("dose", "vancomycin", "--bundle", str(bundle), "--as-of", "2024-03-03T09:00:00Z")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["covariates"]["weight_kg"] == 70.0
    assert out["covariates"]["crcl_ml_min"] > 0
    assert out["individual_parameters"]["cl_l_h"] > 0 and out["individual_parameters"]["vc_l"] > 0
    assert [lv["observed_mg_l"] for lv in out["levels"]] == [12.0, 9.5]
    assert all("fitted_mg_l" in lv for lv in out["levels"])
    assert out["current_regimen"]["auc24_mg_h_l"] > 0
    assert out["recommendation"]
    assert out["model"]["id"] == "vancomycin_goti2018"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "nope"), "no vancomycin model"),
        (("--target-auc", "600-400"), "--target-auc"),
        (("--target-auc", "lots"), "--target-auc"),
    ],
)
def test_dose_bad_arguments_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """Unknown model or a malformed target: exit 2 with a message, no JSON."""
    bundle = _vanco_bundle(tmp_path)
    result = _run("dose", "vancomycin", "--bundle", str(bundle), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_dose_needs_no_dialysis_statement(tmp_path: Path) -> None:
    """No dialysis record: dosed as not on dialysis, said in the sources; --dialysis overrides."""
    bundle = _vanco_bundle(tmp_path, dialysis=None)
    plain = _run("dose", "vancomycin", "--bundle", str(bundle), "--as-of", "2024-03-03")
    assert plain.returncode == 0, plain.stderr
    covariates = json.loads(plain.stdout)["covariates"]
    assert covariates["dialysis"] is False
    assert covariates["sources"]["dialysis"] == "no dialysis recorded in the last 30 days"
    stated = _run(
        "dose", "vancomycin", "--bundle", str(bundle), "--as-of", "2024-03-03", "--dialysis", "yes"
    )
    assert stated.returncode == 0, stated.stderr
    assert json.loads(stated.stdout)["covariates"]["dialysis"] is True


def _with(bundle: dict[str, Any], *resources: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(bundle))
    out["entry"] += [{"resource": r} for r in resources]
    return out


def _coronary_disease(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "chd",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "53741008",
                    "display": "Coronary Heart Disease",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": "2015-04-01",
    }


def test_predict_declines_in_secondary_prevention_and_says_why(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """Coronary heart disease: no PCE (secondary prevention), exit 2, the reason in words."""
    base = _complete_patient(demo_bundles)
    pid = next(
        e["resource"]["id"] for e in base["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    bundle = _write(tmp_path, _with(base, _coronary_disease(pid)))
    result = _run("predict", "pce", "--bundle", str(bundle), "--as-of", "2026-02-01")
    assert result.returncode == 2
    assert (
        "pce does not apply to this patient: clinical ASCVD (coronary heart disease)"
        in result.stderr
    )
    assert "--ignore-applicability" in result.stderr


def test_ignore_applicability_computes_for_research_and_says_so(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """With --ignore-applicability the number comes, labelled research use."""
    base = _complete_patient(demo_bundles)
    pid = next(
        e["resource"]["id"] for e in base["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    bundle = _write(tmp_path, _with(base, _coronary_disease(pid)))
    result = _run(
        "predict", "pce", "--bundle", str(bundle), "--as-of", "2026-02-01", "--ignore-applicability"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["applicability"]["applies"] is False
    assert out["applicability"]["note"].startswith(
        "RESEARCH USE: the applicability rules were ignored"
    )
    assert 0 < out["outputs"]["risk_10y_ascvd"] < 1


def test_an_out_of_range_input_is_said_in_words(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """Systolic BP 194 mmHg for PREVENT (accepts 90-180): said as a clinician would."""
    base = _complete_patient(demo_bundles)
    pid = next(
        e["resource"]["id"] for e in base["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    high = {
        "resourceType": "Observation",
        "id": "sbp-high",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-01-31T09:00:00Z",
        "valueQuantity": {
            "value": 194,
            "unit": "mm[Hg]",
            "system": "http://unitsofmeasure.org",
            "code": "mm[Hg]",
        },
    }
    bundle = _write(tmp_path, _with(base, high))
    result = _run("predict", "prevent", "--bundle", str(bundle), "--as-of", "2026-02-01")
    assert result.returncode == 2
    assert "systolic BP 194 mmHg is above the 180 the PREVENT equations accept" in result.stderr


def test_dose_entries_carry_trough_peak_and_overshoot(tmp_path: Path) -> None:
    """Each recommendation names its steady-state trough and peak and P(AUC24 > target)."""
    bundle = _vanco_bundle(tmp_path)
    result = _run("dose", "vancomycin", "--bundle", str(bundle), "--as-of", "2024-03-03")
    assert result.returncode == 0, result.stderr
    for entry in json.loads(result.stdout)["recommendation"]:
        assert 0 < entry["predicted_trough_mg_l"] < entry["predicted_peak_mg_l"]
        assert 0 <= entry["probability_above_target"] <= 1 - entry["probability_in_target"]


def test_demo_without_the_demo_extra_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`twin-cds demo` lacking a demo-extra package exits 1 with one line saying what to install."""
    from twin_cds import cli

    monkeypatch.setattr(cli, "DEMO_EXTRA", ("sekmet", "twin_cds_no_such_demo_package"))
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "twin-cds: the demo needs the 'demo' extra (twin_cds_no_such_demo_package missing): "
        "pip install 'twin-cds[demo]', or run scripts/demo.sh\n"
    )
