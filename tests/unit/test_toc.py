"""Reading pg_restore's table of contents and writing --use-list files."""

from __future__ import annotations

from pgferry.catalog.toc import merge, parse_list, parse_verbose, render_use_list

LISTING = """;
; Archive created at 2026-11-24 04:39:16 UTC
;
7; 2615 16539 SCHEMA - With Space postgres
2; 3079 16411 EXTENSION - hstore
3497; 0 0 COMMENT - EXTENSION hstore
217; 1259 16541 TABLE With Space T a postgres
3498; 0 0 COMMENT With Space TABLE "T a" postgres
3324; 2606 16548 CONSTRAINT With Space T a T a_pkey postgres
3338; 2606 16566 FK CONSTRAINT public c c_id_fkey postgres
"""

VERBOSE = """--
-- TOC entry 7 (class 2615 OID 16539)
-- Name: With Space; Type: SCHEMA; Schema: -; Owner: postgres
--
CREATE SCHEMA "With Space";
-- TOC entry 2 (class 3079 OID 16411)
-- Name: hstore; Type: EXTENSION; Schema: -; Owner: -
-- TOC entry 3497 (class 0 OID 0)
-- Dependencies: 2
-- Name: EXTENSION hstore; Type: COMMENT; Schema: -; Owner:\x20
-- TOC entry 217 (class 1259 OID 16541)
-- Dependencies: 2 2 7
-- Name: T a; Type: TABLE; Schema: With Space; Owner: postgres; Tablespace:\x20
-- TOC entry 3498 (class 0 OID 0)
-- Dependencies: 217
-- Name: TABLE "T a"; Type: COMMENT; Schema: With Space; Owner: postgres
-- TOC entry 3324 (class 2606 OID 16548)
-- Dependencies: 217
-- Name: T a T a_pkey; Type: CONSTRAINT; Schema: With Space; Owner: postgres
-- TOC entry 3338 (class 2606 OID 16566)
-- Dependencies: 217 3324
-- Name: c c_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
"""


def test_merge_gives_ids_names_and_dependencies() -> None:
    entries = merge(parse_list(LISTING), parse_verbose(VERBOSE.splitlines(True)))
    assert [e.dump_id for e in entries] == [7, 2, 3497, 217, 3498, 3324, 3338]
    table = entries[3]
    assert (table.desc, table.namespace, table.tag, table.catalog_oid, table.oid) == (
        "TABLE",
        "With Space",
        "T a",
        1259,
        16541,
    )
    assert table.deps == (2, 2, 7)
    assert entries[0].namespace is None and entries[0].desc == "SCHEMA"
    assert entries[2].desc == "COMMENT" and entries[2].owner is None
    assert entries[6].desc == "FK CONSTRAINT" and entries[6].deps == (217, 3324)


def test_use_list_keeps_order_and_comments_out_the_rest() -> None:
    entries = merge(parse_list(LISTING), parse_verbose(VERBOSE.splitlines(True)))
    text = render_use_list(entries, {7, 217, 3338})
    lines = text.splitlines()
    assert len(lines) == 7
    assert lines[0].startswith("7; ") and lines[3].startswith("217; ")
    assert lines[1].startswith(";2; ") and lines[5].startswith(";3324; ")
    # pg_restore reads only the number before ';' of a line.
    assert [ln.split(";")[0] for ln in lines if not ln.startswith(";")] == ["7", "217", "3338"]
