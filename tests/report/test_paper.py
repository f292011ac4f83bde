"""The paper's tables shipped with the package (``stvm.report.paper``)."""

from stvm.report import paper


def test_paper_tables_parse():
    header, rows = paper.read_table(2)
    assert header[-2:] == ["mIoU16", "mIoU13"] and all(len(r) == len(header) for r in rows)
    assert paper.plus_minus("$39.68 \\pm 1.49$") == (39.68, 1.49)
    assert paper.plus_minus("53.55 \\pm 0.25") == (53.55, 0.25)
    assert paper.number("+6.8") == 6.8 and paper.number("-") is None
    assert paper.short_name("ST_Aug") == paper.short_name("STAug")
