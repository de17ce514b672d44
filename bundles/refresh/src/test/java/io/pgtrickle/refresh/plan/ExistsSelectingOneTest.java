package io.pgtrickle.refresh.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** The select list of an EXISTS subquery that names columns only is read as SELECT 1 (ChangeReads.existsSelectingOne). */
class ExistsSelectingOneTest {

    @Test
    void aListOfColumnsIsReadAsOne() {
        // as PostgreSQL prints TPC-H Q4's EXISTS (SELECT * FROM lineitem ...)
        assertEquals("SELECT o_orderpriority FROM tpchf.orders WHERE (EXISTS ( SELECT 1 FROM tpchf.lineitem\n"
                + "  WHERE lineitem.l_orderkey = orders.o_orderkey))",
                ChangeReads.existsSelectingOne("SELECT o_orderpriority FROM tpchf.orders WHERE (EXISTS ( SELECT lineitem.l_orderkey,\n"
                        + "            lineitem.l_partkey,\n            lineitem.\"Comment\"\n           FROM tpchf.lineitem\n"
                        + "  WHERE lineitem.l_orderkey = orders.o_orderkey))"));
        assertEquals("SELECT a FROM t WHERE NOT exists (select 1 from u WHERE EXISTS (SELECT 1 FROM w))",
                ChangeReads.existsSelectingOne("SELECT a FROM t WHERE NOT exists (select u.x from u WHERE EXISTS (SELECT w.y, w.z FROM w))"));
        // GROUP BY and HAVING stay: they decide whether there are rows
        assertEquals("SELECT a FROM t WHERE EXISTS ( SELECT 1 FROM u GROUP BY u.k HAVING count(*) > 1)",
                ChangeReads.existsSelectingOne("SELECT a FROM t WHERE EXISTS ( SELECT u.k FROM u GROUP BY u.k HAVING count(*) > 1)"));
    }

    @Test
    void anythingButColumnsIsKept() {
        for (String sql : new String[] {
            // an aggregate makes one row of none
            "SELECT a FROM t WHERE EXISTS ( SELECT max(u.x) AS max FROM u)",
            "SELECT a FROM t WHERE EXISTS ( SELECT u.x + 1 FROM u)",
            "SELECT a FROM t WHERE EXISTS ( SELECT u.x AS y FROM u)",
            "SELECT a FROM t WHERE EXISTS ( SELECT DISTINCT u.x FROM u)",
            "SELECT a FROM t WHERE EXISTS ( SELECT 1 FROM u)",
            "SELECT a FROM t WHERE EXISTS ( SELECT FROM u)",
            "SELECT a FROM t WHERE EXISTS ( VALUES (1))",
            // not the keyword
            "SELECT a FROM t WHERE not_exists( SELECT u.x FROM u)",
            "SELECT 'EXISTS ( SELECT u.x FROM u)' AS a, \"exists\" FROM t",
        }) {
            assertEquals(sql, ChangeReads.existsSelectingOne(sql));
        }
    }
}
