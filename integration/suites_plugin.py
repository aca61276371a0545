"""pytest plugin of integration/suites.sh: per-test outcomes, and which tests talk to the server.

Owns, keyed by the test's node id with the server-version suffix SQLAlchemy
puts in class names removed (a proxy must not rename a test):
- `SUITES_RESULTS=<file.json>`: writes {id: {"outcome", "msg", "touched"}}
  at the end. outcome is passed, failed, error (setup or teardown failed) or
  skipped; msg is the first line of the error; touched says whether the
  driver sent at least one command to the server (PyMySQL's
  `Connection._execute_command`) during the test's setup, call or teardown.
  Tests that send nothing (SQL compilation, pure-Python helpers) cannot
  behave differently through a proxy, so the proxy runs leave them out.
- `SUITES_ONLY=<file>`: deselects every test whose id is not a line of <file>.

Not for pytest-xdist (the runs are serial).
"""

import json
import os
import re

import pytest

SUFFIX = re.compile(r"_(mysql|mariadb)(\+\w+)?(_\d+)+")
_current = [None]
_results = {}


def norm(nodeid):
    return SUFFIX.sub("", nodeid)


def pytest_configure(config):
    if not os.environ.get("SUITES_RESULTS"):
        return
    import pymysql.connections

    orig = pymysql.connections.Connection._execute_command

    def counted(self, command, sql):
        # SQLAlchemy's harness checks a pooled connection in and out after
        # every test, which sends a lone ROLLBACK: that alone is not touching
        if _current[0] is not None and sql not in ("ROLLBACK", b"ROLLBACK"):
            _results[_current[0]]["touched"] = True
        return orig(self, command, sql)

    pymysql.connections.Connection._execute_command = counted


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    tid = norm(item.nodeid)
    _results.setdefault(tid, {"outcome": "passed", "msg": "", "touched": False})
    _current[0] = tid
    yield
    _current[0] = None


def first_line(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # skip: (file, line, reason)
        text = str(report.longrepr[-1])
    else:
        text = str(report.longrepr or "")
    return text.strip().splitlines()[0] if text.strip() else ""


def pytest_runtest_logreport(report):
    res = _results.setdefault(
        norm(report.nodeid), {"outcome": "passed", "msg": "", "touched": False}
    )
    if res["outcome"] in ("failed", "error"):
        return  # keep the first failure of the test
    if report.failed:
        res["outcome"] = "failed" if report.when == "call" else "error"
        res["msg"] = first_line(report)
    elif report.skipped and res["outcome"] == "passed":
        # xfail counts as skipped (it did not pass)
        res["outcome"] = "skipped"
        res["msg"] = first_line(report)


def pytest_collection_modifyitems(config, items):
    only = os.environ.get("SUITES_ONLY")
    if not only:
        return
    with open(only) as f:
        keep = {line.rstrip("\n") for line in f}
    selected = [i for i in items if norm(i.nodeid) in keep]
    deselected = [i for i in items if norm(i.nodeid) not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = selected


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("SUITES_RESULTS")
    if path:
        with open(path, "w") as f:
            json.dump(_results, f, indent=0, sort_keys=True)
