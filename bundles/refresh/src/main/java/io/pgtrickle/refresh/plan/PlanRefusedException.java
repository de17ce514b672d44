package io.pgtrickle.refresh.plan;

/** The planner cannot maintain a query differentially; the message says why, for refresh_mode_reason. */
public final class PlanRefusedException extends Exception {

    private static final long serialVersionUID = 1L;

    public PlanRefusedException(String reason) {
        super(reason);
    }
}
