package io.pgtrickle.refresh.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabase;
import java.sql.Connection;
import org.junit.jupiter.api.Test;

/**
 * The planner plans only what its SQL parser reads as PostgreSQL does: the query printed back from
 * the parse tree must normalise to the same definition as the query itself.
 */
class ParserReadBackTest {

    @Test
    void aQueryPrintedBackWithAnotherMeaningIsRefusedAndTheSameMeaningPasses() throws Exception {
        try (MigratedDatabase db = new MigratedDatabase("read_back", c -> { });
             Connection c = db.connect()) {
            db.exec("CREATE TABLE t (id int, name text)");
            c.setAutoCommit(false);
            String query = "SELECT t.id FROM public.t WHERE t.name::text ~~* 'a%'::text";
            // what JSqlParser made of ~~* before the planner spelled it ILIKE: the filter gone
            String misread = RefreshPlanner.misreading(c, query, "SELECT t.id FROM public.t");
            assertNotNull(misread);
            assertTrue(misread.contains("reads the query otherwise than PostgreSQL"), misread);
            // ~~ misread as ~ (~'a'): PostgreSQL rejects the printed text, and that is a refusal too
            assertNotNull(RefreshPlanner.misreading(c, query, "SELECT t.id FROM public.t WHERE t.name::text ~ ~'a%'::text"));
            // spelled differently, meaning the same: passes
            assertNull(RefreshPlanner.misreading(c, query, "SELECT t.id FROM public.t WHERE (t.name)::text ILIKE 'a%'"));
            assertNull(RefreshPlanner.misreading(c, query, DeltaPlanner.deparsed(query)));
            // nothing of the check is left behind
            assertEquals(0, db.queryLong("SELECT count(*) FROM pg_class WHERE relname LIKE 'pgt_read_back%'"));
            c.rollback();
        }
    }

    @Test
    void likeOperatorsAreReadAsKeywordsOutsideLiterals() {
        assertEquals("SELECT a  LIKE  'x~~y' AND b  NOT ILIKE  '!~~*' AND \"c~~\"  NOT LIKE  d  ILIKE  e",
                DeltaPlanner.readable("SELECT a ~~ 'x~~y' AND b !~~* '!~~*' AND \"c~~\" !~~ d ~~* e"));
    }
}
