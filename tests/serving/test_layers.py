"""The service is an HTTP layer over the logged model: starting it loads no training pipeline, no CLI,
and no fitting library (the logistic regression and calibration fits belong to training)."""

import json
import subprocess
import sys

NOT_IN_THE_SERVER = (
    "training",
    "training.pipeline",
    "training.models",
    "training.workflow",
    "cli",
    "reports",
    "sklearn.linear_model",
    "sklearn.isotonic",
    "typer",
)


def test_importing_the_service_loads_no_training_code():
    probe = (
        "import json, sys\nimport serving.service\n"
        f"print(json.dumps([name for name in {list(NOT_IN_THE_SERVER)!r} if name in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
