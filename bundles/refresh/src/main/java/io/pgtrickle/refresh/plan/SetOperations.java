package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.Select;
import net.sf.jsqlparser.statement.select.SelectItem;
import net.sf.jsqlparser.statement.select.SetOperationList;
import net.sf.jsqlparser.statement.select.UnionOp;

/**
 * UNION, INTERSECT and EXCEPT, with or without ALL (a query of only UNION ALL is the ROWS
 * strategy's). The copies of a row in the result are a function of its copies in each branch, so
 * a row is touched only by changes of branch rows equal to it: the branches' change terms, over a
 * UNION ALL of the branches, give the touched rows' hashes, and the query restricted to those rows
 * (in every branch, where PostgreSQL would not push a condition with a subquery down itself)
 * recomputes them. A row's hash is taken over its values cast to the result's column types, so a
 * branch's {@code 1} and another's {@code 1.0} of a numeric column are the same row, as the set
 * operation itself compares them.
 */
final class SetOperations {

    private final String query;
    private final List<String> types;

    private SetOperations(String query, List<String> types) {
        this.query = query;
        this.types = types;
    }

    /** The set operation in {@code query}, or null when it is none or only UNION ALL. */
    static SetOperations of(String query, List<String> types) throws PlanRefusedException {
        Select select = parse(query);
        if (!(select instanceof SetOperationList union) || select.getWithItemsList() != null && !select.getWithItemsList().isEmpty()) {
            return null;
        }
        if (union.getOperations().stream().allMatch(op -> op instanceof UnionOp u && u.isAll())) {
            return null;
        }
        for (PlainSelect b : branches(union)) {
            if (b.getGroupBy() != null || b.getDistinct() != null || b.getHaving() != null || b.getLimit() != null
                    || b.getOffset() != null || b.getFetch() != null || b.getWindowDefinitions() != null
                    || b.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()))) {
                throw new PlanRefusedException("a branch of UNION, INTERSECT or EXCEPT aggregates, uses DISTINCT or LIMIT");
            }
            if (b.getSelectItems().size() != types.size()) {
                throw new PlanRefusedException("a branch of the set operation has " + b.getSelectItems().size()
                        + " result columns but the stream table has " + types.size());
            }
        }
        return new SetOperations(query, types);
    }

    /** The branches as one UNION ALL, each row its values cast to the result's types: the rows the terms read. */
    String keysQuery() throws PlanRefusedException {
        List<String> out = new ArrayList<>();
        for (PlainSelect b : branches((SetOperationList) parse(query))) {
            List<SelectItem<?>> items = new ArrayList<>();
            for (Expression e : casts(b)) {
                items.add(SelectItem.from(e));
            }
            b.setSelectItems(items);
            b.setOrderByElements(null);
            out.add(b.toString());
        }
        return String.join(" UNION ALL ", out);
    }

    /** The query with every branch restricted to the rows whose hash is in CTE {@code keys} (column h). */
    String restricted(String keys) throws PlanRefusedException {
        SetOperationList union = (SetOperationList) parse(query);
        union.setOrderByElements(null);
        for (PlainSelect b : branches(union)) {
            String only = "hash_record_extended(ROW(" + casts(b).stream().map(Object::toString).collect(Collectors.joining(", "))
                    + "), 0) IN (SELECT " + keys + ".h FROM " + keys + ")";
            b.setWhere(DeltaPlanner.parseExpression(b.getWhere() == null ? only : "(" + b.getWhere() + ") AND " + only));
        }
        return union.toString();
    }

    private List<Expression> casts(PlainSelect b) throws PlanRefusedException {
        List<Expression> casts = new ArrayList<>();
        for (int i : IntStream.range(0, types.size()).toArray()) {
            casts.add(DeltaPlanner.parseExpression("CAST((" + b.getSelectItems().get(i).getExpression() + ") AS " + types.get(i) + ")"));
        }
        return casts;
    }

    /** The plain SELECTs of a set operation, nested ones included, in order. */
    private static List<PlainSelect> branches(SetOperationList union) throws PlanRefusedException {
        List<PlainSelect> out = new ArrayList<>();
        for (Select s : union.getSelects()) {
            Select inner = s;
            while (inner instanceof ParenthesedSelect p) {
                if (p.getOrderByElements() != null || p.getLimit() != null || p.getOffset() != null) {
                    throw new PlanRefusedException("a branch of UNION, INTERSECT or EXCEPT aggregates, uses DISTINCT or LIMIT");
                }
                inner = p.getSelect();
            }
            if (inner instanceof SetOperationList nested) {
                if (nested.getLimit() != null || nested.getOffset() != null || nested.getFetch() != null) {
                    throw new PlanRefusedException("a branch of UNION, INTERSECT or EXCEPT aggregates, uses DISTINCT or LIMIT");
                }
                out.addAll(branches(nested));
            } else if (inner instanceof PlainSelect ps) {
                out.add(ps);
            } else {
                throw new PlanRefusedException("a branch of the set operation is not a plain SELECT");
            }
        }
        return out;
    }

    private static Select parse(String query) {
        return DeltaPlanner.select(query);
    }
}
