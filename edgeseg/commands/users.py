"""``edgeseg users add|list|remove FILE``: the people of ``api.users_file`` (issue #35 point 6).

The command writes hashes only: a new token is printed once and never stored, a password is typed
twice (hidden) and stored as scrypt, so an admin never edits hashes by hand. The gateway reads the
file at start and on reload (SIGHUP): a removed user is refused from the reload on.
"""
from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.commands.common import console, fail

users_app = typer.Typer(help="Users of the gateway's API and page (api.users_file): add, list, remove.",
                        no_args_is_help=True)


def _load(path: Path, must_exist: bool) -> list:
    from edgeseg.apps.gateway.users import read_users  # noqa: PLC0415
    from edgeseg.config.settings import ConfigError  # noqa: PLC0415

    if not path.expanduser().exists():
        if must_exist:
            fail(f"{path} does not exist (fix: create it with edgeseg users add {path} NAME --role viewer)")
        return []
    try:
        return read_users(path)
    except ConfigError as exc:
        fail(str(exc))
        raise


@users_app.command("add")
def add_cmd(
    file: Path = typer.Argument(..., help="The users file (api.users_file); created when missing"),
    name: str = typer.Argument(..., help="The user's name (letters, digits, _ . @ -)"),
    role: str = typer.Option("viewer", "--role", help="viewer (reads), operator (+ ack, suspend, resume) or admin (all)"),
    password: bool = typer.Option(False, "--password", help="Ask for a password (typed twice, hidden) instead of "
                                  "making a token"),
    replace: bool = typer.Option(False, "--replace", help="Replace a user of that name (a new secret, a new role)"),
) -> None:
    """Add a user: prints a new token ONCE (only its SHA-256 is written), or stores a scrypt hash of the password
    typed. The file is written atomically with mode 0600."""
    from edgeseg.apps.gateway.users import NAME, ROLES, User, hash_password, new_token, token_sha256, write_users  # noqa: PLC0415

    if not NAME.match(name):
        fail(f"user name {name!r}: use 1-64 of letters, digits, _ . @ - (fix: e.g. ann)")
    if role not in ROLES:
        fail(f"--role {role!r}: one of {', '.join(ROLES)} (fix: e.g. --role operator)")
    users = _load(file, must_exist=False)
    if any(u.name == name for u in users) and not replace:
        fail(f"user {name} is already in {file} (fix: --replace to give it a new secret or role, or edgeseg users "
             f"remove {file} {name})")
    users = [u for u in users if u.name != name]
    token = None
    if password:
        secret = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        if len(secret) < 10:
            fail("the password is under 10 characters (fix: a longer one; or leave out --password for a token)")
        user = User(name, role, password=hash_password(secret))
    else:
        token = new_token()
        user = User(name, role, token_sha256=token_sha256(token))
    try:
        write_users(file, [*users, user])
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror or exc} (fix: a folder this user may write)")
    console.print(f"added {name} ({role}) to {file}", markup=False, highlight=False)
    if token is not None:  # the only time it exists outside the person's hands
        console.print("token (shown once, store it now; the file keeps only its hash):", markup=False, highlight=False)
        print(token)


@users_app.command("list")
def list_cmd(file: Path = typer.Argument(..., help="The users file (api.users_file)")) -> None:
    """Names, roles and how each signs in (token or password); never a hash."""
    for u in _load(file, must_exist=True):
        print(f"{u.name}\t{u.role}\t{'password' if u.password else 'token'}")


@users_app.command("remove")
def remove_cmd(file: Path = typer.Argument(..., help="The users file (api.users_file)"),
               name: str = typer.Argument(..., help="The user to remove")) -> None:
    """Remove a user (the gateway refuses them after its next reload, SIGHUP, or start)."""
    from edgeseg.apps.gateway.users import write_users  # noqa: PLC0415

    users = _load(file, must_exist=True)
    if not any(u.name == name for u in users):
        fail(f"no user {name} in {file} (fix: edgeseg users list {file})")
    write_users(file, [u for u in users if u.name != name])
    console.print(f"removed {name} from {file}", markup=False, highlight=False)
