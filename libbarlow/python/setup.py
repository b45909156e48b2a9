"""Build hook of the barlow package: records the library directory.

With BARLOW_LIBDIR set at build time (libbarlow/python/install.sh sets it to
the install prefix's LIBDIR), the built package gets a generated
barlow/_install_paths.py holding LIBDIR, where barlow looks for
libbarlow.so.0 after $BARLOW_LIBRARY. The file is written into the build
directory only, never into the source tree. Everything else is in
pyproject.toml."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def run(self):
        super().run()
        libdir = os.environ.get("BARLOW_LIBDIR", "")
        target = os.path.join(self.build_lib, "barlow", "_install_paths.py")
        if libdir:
            with open(target, "w") as f:
                f.write('"""Generated at install time (BARLOW_LIBDIR)."""\nLIBDIR = %r\n'
                        % os.path.abspath(libdir))
        elif os.path.exists(target):
            os.remove(target)  # a stale file from an earlier build with BARLOW_LIBDIR


setup(cmdclass={"build_py": BuildPy})
