from wce_cli.app import app

app(prog_name="wce")
