"""Click groups whose subcommands are the modules of a package.

A module ``diodcli/commands/<name>.py`` that defines ``COMMAND`` becomes ``diod <name>``,
so adding a stage never edits a shared file. Modules must not import torch at top level:
``diod --help`` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


class ModuleGroup(click.Group):
    def __init__(
        self, *args, package: str, prefix: str = "", exclude: tuple[str, ...] = (), **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.package = package
        self.prefix = prefix
        self.exclude = exclude

    def _module_names(self) -> dict[str, str]:
        pkg = importlib.import_module(self.package)
        names = {}
        for info in pkgutil.iter_modules(pkg.__path__):
            mod = info.name
            if mod.startswith("_") or not mod.startswith(self.prefix):
                continue
            if any(mod.startswith(e) for e in self.exclude):
                continue
            names[mod[len(self.prefix) :].replace("_", "-")] = f"{self.package}.{mod}"
        return names

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._module_names()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        module = self._module_names().get(cmd_name)
        if module is None:
            return None
        return importlib.import_module(module).COMMAND
