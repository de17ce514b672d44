package io.pgtrickle.refresh;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * TPC-H schema and a deterministic, seeded data generator at about scale factor 0.001 (1,500 orders,
 * about 6,000 lineitems, 150 customers, 200 parts, 800 partsupp rows, 10 suppliers), following the
 * distributions of the spec's dbgen loosely: what matters here is that every test query finds rows.
 *
 * <p>Keys are NOT NULL (primary keys); every other column is nullable so the workload can put NULLs
 * into join keys, group keys and aggregate inputs. Everything is driven by the given {@link Random}
 * only, so a seed fixes the data and the order of the statements.
 */
final class TpchData {

    static final int SUPPLIERS = 10;
    static final int CUSTOMERS = 150;
    static final int PARTS = 200;
    static final int ORDERS = 1500;

    static final String[] DDL = {
        "CREATE TABLE region (r_regionkey int PRIMARY KEY, r_name char(25), r_comment varchar(152))",
        "CREATE TABLE nation (n_nationkey int PRIMARY KEY, n_name char(25), n_regionkey int, n_comment varchar(152))",
        "CREATE TABLE supplier (s_suppkey int PRIMARY KEY, s_name char(25), s_address varchar(40), s_nationkey int,"
                + " s_phone char(15), s_acctbal numeric(15,2), s_comment varchar(101))",
        "CREATE TABLE customer (c_custkey int PRIMARY KEY, c_name varchar(25), c_address varchar(40), c_nationkey int,"
                + " c_phone char(15), c_acctbal numeric(15,2), c_mktsegment char(10), c_comment varchar(117))",
        "CREATE TABLE part (p_partkey int PRIMARY KEY, p_name varchar(55), p_mfgr char(25), p_brand char(10), p_type varchar(25),"
                + " p_size int, p_container char(10), p_retailprice numeric(15,2), p_comment varchar(23))",
        "CREATE TABLE partsupp (ps_partkey int, ps_suppkey int, ps_availqty int, ps_supplycost numeric(15,2),"
                + " ps_comment varchar(199), PRIMARY KEY (ps_partkey, ps_suppkey))",
        "CREATE TABLE orders (o_orderkey int PRIMARY KEY, o_custkey int, o_orderstatus char(1), o_totalprice numeric(15,2),"
                + " o_orderdate date, o_orderpriority char(15), o_clerk char(15), o_shippriority int, o_comment varchar(79))",
        "CREATE TABLE lineitem (l_orderkey int, l_partkey int, l_suppkey int, l_linenumber int, l_quantity numeric(15,2),"
                + " l_extendedprice numeric(15,2), l_discount numeric(15,2), l_tax numeric(15,2), l_returnflag char(1),"
                + " l_linestatus char(1), l_shipdate date, l_commitdate date, l_receiptdate date, l_shipinstruct char(25),"
                + " l_shipmode char(10), l_comment varchar(44), PRIMARY KEY (l_orderkey, l_linenumber))",
    };

    static final String[] REGIONS = {"AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"};
    static final String[] NATIONS = {"ALGERIA", "ARGENTINA", "BRAZIL", "CANADA", "EGYPT", "ETHIOPIA", "FRANCE", "GERMANY", "INDIA",
        "INDONESIA", "IRAN", "IRAQ", "JAPAN", "JORDAN", "KENYA", "MOROCCO", "MOZAMBIQUE", "PERU", "CHINA", "ROMANIA",
        "SAUDI ARABIA", "VIETNAM", "RUSSIA", "UNITED KINGDOM", "UNITED STATES"};
    static final int[] NATION_REGION = {0, 1, 1, 1, 4, 0, 3, 3, 2, 2, 4, 4, 2, 4, 0, 0, 0, 1, 2, 3, 4, 2, 3, 3, 1};
    /** Nations the queries ask for (FRANCE, GERMANY and the ASIA ones), drawn more often at this scale. */
    static final int[] HOT_NATIONS = {6, 7, 8, 9, 12, 18, 21};

    static final String[] SEGMENTS = {"AUTOMOBILE", "BUILDING", "FURNITURE", "MACHINERY", "HOUSEHOLD"};
    static final String[] PRIORITIES = {"1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"};
    static final String[] INSTRUCTIONS = {"DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"};
    static final String[] MODES = {"REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"};
    static final String[] TYPE1 = {"STANDARD", "SMALL", "MEDIUM", "LARGE", "ECONOMY", "PROMO"};
    static final String[] TYPE2 = {"ANODIZED", "BURNISHED", "PLATED", "POLISHED", "BRUSHED"};
    static final String[] TYPE3 = {"TIN", "NICKEL", "BRASS", "STEEL", "COPPER"};
    static final String[] CONTAINER1 = {"SM", "LG", "MED", "JUMBO", "WRAP"};
    static final String[] CONTAINER2 = {"CASE", "BOX", "BAG", "JAR", "PKG", "PACK", "CAN", "DRUM"};
    static final String[] COLORS = {"almond", "antique", "azure", "beige", "blue", "blush", "chartreuse", "coral", "cyan", "forest",
        "green", "honeydew", "ivory", "khaki", "lavender", "lime", "magenta", "navy", "olive", "orchid", "peach", "plum", "rose",
        "salmon", "tan"};
    static final String[] WORDS = {"furiously", "special", "requests", "carefully", "final", "deposits", "blithely", "ironic",
        "packages", "quickly", "express", "accounts", "pending", "regular", "theodolites", "slyly", "bold", "pinto", "beans"};

    static final LocalDate START = LocalDate.of(1992, 1, 1);
    static final LocalDate CURRENT = LocalDate.of(1995, 6, 17);
    /** Last order date: 1998-08-02 minus 151 days, as in the spec. */
    static final int ORDER_DAYS = (int) (LocalDate.of(1998, 8, 2).toEpochDay() - START.toEpochDay()) - 151;

    private final Random rnd;
    private final BigDecimal[] retailPrice = new BigDecimal[PARTS + 1];

    TpchData(Random rnd) {
        this.rnd = rnd;
        for (int p = 1; p <= PARTS; p++) {
            retailPrice[p] = BigDecimal.valueOf(90000 + (p / 10) % 20001 + 100 * (p % 1000), 2);
        }
    }

    Random random() {
        return rnd;
    }

    // ---------------------------------------------------------------- value helpers

    static String q(String s) {
        return s == null ? "NULL" : "'" + s.replace("'", "''") + "'";
    }

    static String d(LocalDate date) {
        return date == null ? "NULL" : "DATE '" + date + "'";
    }

    String pick(String[] values) {
        return values[rnd.nextInt(values.length)];
    }

    int between(int lo, int hi) {
        return lo + rnd.nextInt(hi - lo + 1);
    }

    /** A money value with two decimals in [lo, hi]. */
    BigDecimal money(int loCents, int hiCents) {
        return BigDecimal.valueOf(between(loCents, hiCents), 2);
    }

    String comment(int maxLength) {
        StringBuilder sb = new StringBuilder();
        for (int i = between(3, 7); i > 0; i--) {
            String w = pick(WORDS);
            if (sb.length() + w.length() + 1 > maxLength) {
                break;
            }
            sb.append(sb.length() == 0 ? "" : " ").append(w);
        }
        return sb.toString();
    }

    int nation() {
        return rnd.nextInt(100) < 60 ? HOT_NATIONS[rnd.nextInt(HOT_NATIONS.length)] : rnd.nextInt(25);
    }

    String phone(int nation) {
        return (nation + 10) + "-" + between(100, 999) + "-" + between(100, 999) + "-" + between(1000, 9999);
    }

    BigDecimal retailPrice(int partkey) {
        return retailPrice[partkey];
    }

    /** One of the four suppliers partsupp has for the part (i in 0..3). */
    static int partSupplier(int partkey, int i) {
        return (partkey - 1 + i * 3) % SUPPLIERS + 1;
    }

    /** Customers with a key divisible by 3 never order (as in the spec), so Q13 sees customers without orders. */
    int orderingCustomer() {
        int c;
        do {
            c = between(1, CUSTOMERS);
        } while (c % 3 == 0);
        return c;
    }

    LocalDate orderDate() {
        return START.plusDays(rnd.nextInt(ORDER_DAYS + 1));
    }

    // ---------------------------------------------------------------- rows

    /** INSERT statements for the initial population, in multi-row batches. */
    List<String> initialInserts() {
        List<String> sql = new ArrayList<>();
        List<String> rows = new ArrayList<>();
        for (int r = 0; r < REGIONS.length; r++) {
            rows.add("(" + r + ", " + q(REGIONS[r]) + ", " + q(comment(152)) + ")");
        }
        batch(sql, "region", rows);
        for (int n = 0; n < NATIONS.length; n++) {
            rows.add("(" + n + ", " + q(NATIONS[n]) + ", " + NATION_REGION[n] + ", " + q(comment(152)) + ")");
        }
        batch(sql, "nation", rows);
        // the first five suppliers cover FRANCE, GERMANY and ASIA, so Q5 and Q7 find rows at this scale
        int[] fixed = {6, 7, 8, 12, 18};
        for (int s = 1; s <= SUPPLIERS; s++) {
            int n = s <= fixed.length ? fixed[s - 1] : nation();
            rows.add("(" + s + ", " + q(String.format("Supplier#%09d", s)) + ", " + q("addr " + between(1, 9999)) + ", " + n + ", "
                    + q(phone(n)) + ", " + money(-99999, 999999) + ", " + q(comment(101)) + ")");
        }
        batch(sql, "supplier", rows);
        for (int c = 1; c <= CUSTOMERS; c++) {
            int n = nation();
            rows.add("(" + c + ", " + q(String.format("Customer#%09d", c)) + ", " + q("addr " + between(1, 9999)) + ", " + n + ", "
                    + q(phone(n)) + ", " + money(-99999, 999999) + ", " + q(pick(SEGMENTS)) + ", " + q(comment(117)) + ")");
        }
        batch(sql, "customer", rows);
        for (int p = 1; p <= PARTS; p++) {
            List<String> colors = new ArrayList<>(List.of(COLORS));
            StringBuilder name = new StringBuilder();
            for (int i = 0; i < 5; i++) {
                name.append(i == 0 ? "" : " ").append(colors.remove(rnd.nextInt(colors.size())));
            }
            int m = between(1, 5);
            rows.add("(" + p + ", " + q(name.toString()) + ", " + q("Manufacturer#" + m) + ", " + q("Brand#" + m + between(1, 5)) + ", "
                    + q(pick(TYPE1) + " " + pick(TYPE2) + " " + pick(TYPE3)) + ", " + between(1, 50) + ", "
                    + q(pick(CONTAINER1) + " " + pick(CONTAINER2)) + ", " + retailPrice(p) + ", " + q(comment(23)) + ")");
        }
        batch(sql, "part", rows);
        for (int p = 1; p <= PARTS; p++) {
            for (int i = 0; i < 4; i++) {
                rows.add("(" + p + ", " + partSupplier(p, i) + ", " + between(1, 9999) + ", " + money(100, 100000) + ", "
                        + q(comment(199)) + ")");
            }
        }
        batch(sql, "partsupp", rows);
        List<String> lineitems = new ArrayList<>();
        for (int o = 1; o <= ORDERS; o++) {
            Order order = order(o);
            rows.add(order.row);
            lineitems.addAll(order.lineitems);
        }
        batch(sql, "orders", rows);
        batch(sql, "lineitem", lineitems);
        return sql;
    }

    private static void batch(List<String> sql, String table, List<String> rows) {
        for (int i = 0; i < rows.size(); i += 500) {
            sql.add("INSERT INTO " + table + " VALUES " + String.join(", ", rows.subList(i, Math.min(rows.size(), i + 500))));
        }
        rows.clear();
    }

    /** An order row and its lineitem rows (VALUES tuples). */
    record Order(int orderkey, String row, List<String> lineitems) {
    }

    Order order(int orderkey) {
        LocalDate orderDate = orderDate();
        int lines = between(1, 7);
        List<String> items = new ArrayList<>();
        BigDecimal total = BigDecimal.ZERO;
        int open = 0;
        for (int l = 1; l <= lines; l++) {
            int part = between(1, PARTS);
            int supp = partSupplier(part, rnd.nextInt(4));
            int qty = between(1, 50);
            BigDecimal price = retailPrice(part).multiply(BigDecimal.valueOf(qty));
            BigDecimal discount = money(0, 10);
            BigDecimal tax = money(0, 8);
            LocalDate ship = orderDate.plusDays(between(1, 121));
            LocalDate commit = orderDate.plusDays(between(30, 90));
            LocalDate receipt = ship.plusDays(between(1, 30));
            String returnFlag = receipt.isAfter(CURRENT) ? "N" : rnd.nextBoolean() ? "R" : "A";
            String lineStatus = ship.isAfter(CURRENT) ? "O" : "F";
            if ("O".equals(lineStatus)) {
                open++;
            }
            total = total.add(price.multiply(BigDecimal.ONE.add(tax)).multiply(BigDecimal.ONE.subtract(discount)));
            items.add("(" + orderkey + ", " + part + ", " + supp + ", " + l + ", " + qty + ", " + price + ", " + discount + ", " + tax
                    + ", " + q(returnFlag) + ", " + q(lineStatus) + ", " + d(ship) + ", " + d(commit) + ", " + d(receipt) + ", "
                    + q(pick(INSTRUCTIONS)) + ", " + q(pick(MODES)) + ", " + q(comment(44)) + ")");
        }
        String status = open == lines ? "O" : open == 0 ? "F" : "P";
        String row = "(" + orderkey + ", " + orderingCustomer() + ", " + q(status) + ", " + total.setScale(2, RoundingMode.HALF_UP) + ", "
                + d(orderDate) + ", " + q(pick(PRIORITIES)) + ", " + q(String.format("Clerk#%09d", between(1, 10))) + ", 0, "
                + q(comment(79)) + ")";
        return new Order(orderkey, row, items);
    }
}
