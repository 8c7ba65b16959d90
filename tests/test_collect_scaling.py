"""collect writes the scaling model: scaling.csv, predictions.csv, the report's section and verdicts.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from aslhpc import api
from aslhpc.analysis.reference import default_reference_path, load_reference


def test_reference_only_collect_writes_a_refittable_scaling_model(tmp_path: Path) -> None:
    out = api.collect_reference(load_reference(default_reference_path()), tmp_path / "ref", plots=False)
    fits = pd.read_csv(tmp_path / "ref" / "scaling.csv")
    preds = pd.read_csv(tmp_path / "ref" / "predictions.csv")
    assert sorted(fits["batch_size"]) == [128, 256, 512]
    assert (fits["source"] == preds["source"].iloc[0]).all() and "2020" in fits["source"].iloc[0]
    ref = load_reference(default_reference_path())
    for _, f in fits.iterrows():  # an independent refit of the published table gives the same model
        rows = ref[ref["batch_size"] == f["batch_size"]]
        a = np.column_stack([np.ones(len(rows)), 1.0 / rows["gpus"].to_numpy(float)])
        serial, parallel = np.linalg.lstsq(a, rows["exec_time_s"].to_numpy(float), rcond=None)[0]
        assert serial >= 0 and parallel >= 0  # NNLS and LSQ agree when LSQ is already non-negative
        assert np.isclose(f["serial_s"], serial) and np.isclose(f["parallel_s"], parallel)
        p = preds[preds["batch_size"] == f["batch_size"]].set_index("gpus")["predicted_time_s"]
        assert list(p.index) == list(range(1, 9))
        assert np.allclose(p.to_numpy(), serial + parallel / p.index.to_numpy(float))
    verdicts = json.loads((tmp_path / "ref" / "verdicts.json").read_text())
    assert len(verdicts["scaling"]) == 3 and all("serial part" in s for s in verdicts["scaling"])
    report = out.report_path.read_text()
    assert "## Scaling model" in report and "b=128: the serial part is" in report
