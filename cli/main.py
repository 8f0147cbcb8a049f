"""The `tiering` command line: one module per command group, registered here in the order `--help` lists them.

Each command is a thin shell: parse options, call domain functions, print with rich. Known user
errors (bad data, bad config, bad model URI) become one clear message and exit code 2; nothing
prints a traceback at a user.
"""

from __future__ import annotations

import sys

from cli import alerts, data, forecast, init, models, pilot, review, scores, serve, whatif, workspace
from cli.common import app, friendly_errors

COMMANDS = {
    "generate": data.generate,
    "validate": data.validate,
    "init": friendly_errors(init.init_command),
    "train": models.train,
    "promote": models.promote,
    "rollback": models.rollback,
    "score": scores.score,
    "compare": scores.compare,
    "diff": scores.diff,
    "review": review.review,
    "forecast": forecast.forecast,
    "alerts": friendly_errors(alerts.alerts_command),
    "export": friendly_errors(alerts.export_command),
    "publish": workspace.publish,
    "whatif": whatif.whatif,
    "serve": serve.serve,
    "demo": models.demo,
}
for name, command in COMMANDS.items():
    app.command(name=name)(command)
app.add_typer(workspace.users_app, name="users")
app.add_typer(workspace.db_app, name="db")
app.add_typer(pilot.pilot_app, name="pilot")
pilot.pilot_app.command(name="design")(pilot.design)
pilot.pilot_app.command(name="readout")(pilot.readout)
app.add_typer(whatif.config_app, name="config")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
