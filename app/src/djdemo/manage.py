"""``djdemo-manage``: Django's manage.py for the installed package.

    djdemo-manage [--env-file PATH] COMMAND [ARGS...]

``--env-file`` loads the deployed environment file first (the one systemd gives the app
server), so migrate, collectstatic and ensure_admin see exactly the service's settings.
"""
import os
import sys


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and (argv[1] == "--env-file" or argv[1].startswith("--env-file=")):
        if "=" in argv[1]:
            path = argv[1].split("=", 1)[1]
            del argv[1]
        elif len(argv) > 2:
            path = argv[2]
            del argv[1:3]
        else:
            sys.exit("djdemo-manage: --env-file needs a path")
        from djdemo.env import load_env_file

        try:
            load_env_file(path)
        except (OSError, ValueError) as exc:
            sys.exit(f"djdemo-manage: {path}: {exc}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djdemo.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)


if __name__ == "__main__":
    main()
