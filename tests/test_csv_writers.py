"""Every CSV the product writes goes through one writer (crm.exports.writer), which defuses the
cells a spreadsheet would run as formulas: the code is read with ``ast`` so no other
``csv.writer`` / ``csv.DictWriter`` appears in crm/, ml/ or web/, and the rejected-rows report
of a real import is read back."""
import ast
import csv
import io

import pytest

from crm import exports
from crm.imports.importer import import_files
from crm.imports.reports import rejected_path_for
from tests.conftest import ROOT, read_rejects

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
WRITER_MODULE = ROOT / "crm" / "exports.py"


def _csv_writer_calls(path):
    """(line, name) of each use of csv.writer / csv.DictWriter in a module, however imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "csv":
            found += [(node.lineno, f"from csv import {a.name}") for a in node.names if a.name in {"writer", "DictWriter"}]
        elif (isinstance(node, ast.Attribute) and node.attr in {"writer", "DictWriter"}
              and isinstance(node.value, ast.Name) and node.value.id == "csv"):
            found.append((node.lineno, f"csv.{node.attr}"))
    return found


def test_csv_writers_only_in_the_defusing_module():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {name}"
                 for package in ("crm", "ml", "web") for path in sorted((ROOT / package).rglob("*.py"))
                 if path != WRITER_MODULE for line, name in _csv_writer_calls(path)]

    assert not offenders, "write CSV with crm.exports.writer, which defuses formula cells:\n" + "\n".join(offenders)


def test_csv_writer_check_catches_each_spelling(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import csv\nfrom csv import DictWriter\nw = csv.writer(f)\nd = csv.DictWriter(f, [])\n")

    assert [line for line, _ in _csv_writer_calls(module)] == [2, 3, 4]


@pytest.mark.parametrize("start", FORMULA_STARTS, ids=repr)
def test_writer_defuses_text_starting_like_a_formula(start):
    out = io.StringIO()

    exports.writer(out).writerow([start + "SUM(A1:A9)", "plain", start])

    [row] = csv.reader(io.StringIO(out.getvalue()))
    assert row == ["'" + start + "SUM(A1:A9)", "plain", "'" + start]


def test_writer_keeps_numbers_machine_readable():
    out = io.StringIO()

    exports.writer(out).writerow([-5, -0.25, "-5", "-1.5e-07", "+3.2", None, "-1+2"])

    [row] = csv.reader(io.StringIO(out.getvalue()))
    assert row == ["-5", "-0.25", "-5", "-1.5e-07", "+3.2", "", "'-1+2"]


def test_rejected_report_defuses_every_formula_start(db, tmp_path):
    path = tmp_path / "customers.csv"
    rows = [["K" * 101, start + "HYPERLINK(\"http://x\")", start + "cmd|' /C calc'!A0"] for start in FORMULA_STARTS]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)  # the uploaded file, as a person's tool wrote it: not product output
        writer.writerow(["external_id", "name", "company"])
        writer.writerows(rows)

    run = import_files({"customers": path})

    assert run.files.get().rejected == len(FORMULA_STARTS)
    report = read_rejects(rejected_path_for(path))
    assert [(r["outcome"], r["name"], r["company"]) for r in report] == [
        ("rejected", "'" + name, "'" + company) for _, name, company in rows]
    assert all("external_id is longer than 100" in r["reason"] for r in report)
