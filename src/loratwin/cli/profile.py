"""`loratwin profile ...`: make a profile for your own GPU and model.

`derive` writes one from the model's architecture and the GPU's datasheet (profile_derive.py); `plan`,
`make-adapters` and `import` prepare and read the measurements that calibrate it (profile_lab.py); `fit`
fits it on those measurements (profile_fit.py).
"""

import typer

from loratwin.cli.app import app

profile_app = typer.Typer(
    no_args_is_help=True,
    help="Make a profile for your own GPU and model: derive it, plan and import measurements, fit it.",
)
app.add_typer(profile_app, name="profile")
