package io.pgtrickle.refresh.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * How TopK reads a normalised query (as {@code pg_get_viewdef} prints it): which result column each
 * ORDER BY item sorts by, and what it refuses. The refreshes themselves are checked against
 * PostgreSQL in TopKRandomizedTest and DifferentialShapesTest.
 */
class TopKTest {

    private static String of(String query) throws PlanRefusedException {
        TopK top = TopK.of(query);
        return top == null ? null : top + " " + top.inner();
    }

    @Test
    void orderByItemsAreResultColumnsByPositionNameOrExpression() throws PlanRefusedException {
        assertEquals("TopK(3: 1) SELECT id, v FROM public.a", of("SELECT id, v FROM public.a ORDER BY v LIMIT 3"));
        // PostgreSQL prints expressions in parentheses, and ORDER BY an alias as its expression
        assertEquals("TopK(3: 1 DESC NULLS LAST, 2, 0) SELECT g, sum(v) AS s, count(*) AS n FROM public.a GROUP BY g",
                of("SELECT g, sum(v) AS s, count(*) AS n FROM public.a GROUP BY g ORDER BY (sum(v)) DESC NULLS LAST, (count(*)), g LIMIT 3"));
        assertEquals("TopK(3: 1) SELECT id, v + 1::numeric AS w FROM public.a",
                of("SELECT id, v + 1::numeric AS w FROM public.a ORDER BY (v + 1::numeric) LIMIT 3"));
        // a bare name is an output name first: g AS v, ORDER BY v printed as the column g
        assertEquals("TopK(3: 0) SELECT g AS v, id FROM public.a", of("SELECT g AS v, id FROM public.a ORDER BY g LIMIT 3"));
        assertEquals("TopK(2: 1 DESC, 0) SELECT a.id, b.name FROM public.a JOIN public.b ON a.k = b.k",
                of("SELECT a.id, b.name FROM public.a JOIN public.b ON a.k = b.k ORDER BY b.name DESC, a.id LIMIT 2"));
        // a UNION ALL is ordered by position
        assertEquals("TopK(3: 0) SELECT a.id FROM public.a UNION ALL SELECT b.k AS id FROM public.b",
                of("SELECT a.id FROM public.a UNION ALL SELECT b.k AS id FROM public.b ORDER BY 1 LIMIT 3"));
        assertEquals("TopK(0: 0) SELECT id FROM public.a", of("SELECT id FROM public.a ORDER BY id LIMIT 0"));
    }

    @Test
    void withoutLimitThereIsNoTopK() throws PlanRefusedException {
        assertNull(of("SELECT id, v FROM public.a ORDER BY v"));
        // PostgreSQL prints LIMIT NULL as LIMIT ALL: no limit
        assertNull(of("SELECT id, v FROM public.a ORDER BY v LIMIT ALL"));
    }

    @Test
    void whatItRefuses() {
        assertRefused("OFFSET", "SELECT a.id, b.name FROM public.a JOIN public.b ON a.k = b.k ORDER BY b.name DESC, a.id OFFSET 2 LIMIT 3");
        assertRefused("FETCH", "SELECT id, v FROM public.a ORDER BY v FETCH FIRST (3) ROWS WITH TIES");
        assertRefused("integer literal", "SELECT id, v FROM public.a ORDER BY v LIMIT 3.5");
        assertRefused("not a result column", "SELECT id, v FROM public.a ORDER BY k LIMIT 3");
        assertRefused("not a result column", "SELECT id, v FROM public.a ORDER BY 3 LIMIT 3");
        // g AS id, id AS g ORDER BY id: PostgreSQL qualifies the column it means; not matched, refused
        assertRefused("not a result column", "SELECT id AS v, v AS id FROM public.a ORDER BY a.id LIMIT 3");
    }

    private static void assertRefused(String reason, String query) {
        PlanRefusedException e = assertThrows(PlanRefusedException.class, () -> TopK.of(query), query);
        assertTrue(e.getMessage().contains(reason), e.getMessage());
    }
}
