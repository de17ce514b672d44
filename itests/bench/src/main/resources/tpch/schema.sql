-- TPC-H schema and a deterministic generator in SQL, after the spec's dbgen (TPC-H 3.0.1 §4.2): row
-- counts scale with :sf, value domains follow the spec closely enough for the 22 queries' validation
-- parameters to select rows. Seeded: the same scale gives the same data.
CREATE TABLE region (r_regionkey int PRIMARY KEY, r_name char(25) NOT NULL, r_comment varchar(152));
CREATE TABLE nation (n_nationkey int PRIMARY KEY, n_name char(25) NOT NULL, n_regionkey int NOT NULL, n_comment varchar(152));
CREATE TABLE supplier (s_suppkey int PRIMARY KEY, s_name char(25) NOT NULL, s_address varchar(40) NOT NULL, s_nationkey int NOT NULL,
    s_phone char(15) NOT NULL, s_acctbal numeric(15,2) NOT NULL, s_comment varchar(101) NOT NULL);
CREATE TABLE part (p_partkey int PRIMARY KEY, p_name varchar(55) NOT NULL, p_mfgr char(25) NOT NULL, p_brand char(10) NOT NULL,
    p_type varchar(25) NOT NULL, p_size int NOT NULL, p_container char(10) NOT NULL, p_retailprice numeric(15,2) NOT NULL,
    p_comment varchar(23) NOT NULL);
CREATE TABLE partsupp (ps_partkey int NOT NULL, ps_suppkey int NOT NULL, ps_availqty int NOT NULL, ps_supplycost numeric(15,2) NOT NULL,
    ps_comment varchar(199) NOT NULL, PRIMARY KEY (ps_partkey, ps_suppkey));
CREATE TABLE customer (c_custkey int PRIMARY KEY, c_name varchar(25) NOT NULL, c_address varchar(40) NOT NULL, c_nationkey int NOT NULL,
    c_phone char(15) NOT NULL, c_acctbal numeric(15,2) NOT NULL, c_mktsegment char(10) NOT NULL, c_comment varchar(117) NOT NULL);
CREATE TABLE orders (o_orderkey int PRIMARY KEY, o_custkey int NOT NULL, o_orderstatus char(1) NOT NULL, o_totalprice numeric(15,2) NOT NULL,
    o_orderdate date NOT NULL, o_orderpriority char(15) NOT NULL, o_clerk char(15) NOT NULL, o_shippriority int NOT NULL,
    o_comment varchar(79) NOT NULL);
CREATE TABLE lineitem (l_orderkey int NOT NULL, l_partkey int NOT NULL, l_suppkey int NOT NULL, l_linenumber int NOT NULL,
    l_quantity numeric(15,2) NOT NULL, l_extendedprice numeric(15,2) NOT NULL, l_discount numeric(15,2) NOT NULL,
    l_tax numeric(15,2) NOT NULL, l_returnflag char(1) NOT NULL, l_linestatus char(1) NOT NULL, l_shipdate date NOT NULL,
    l_commitdate date NOT NULL, l_receiptdate date NOT NULL, l_shipinstruct char(25) NOT NULL, l_shipmode char(10) NOT NULL,
    l_comment varchar(44) NOT NULL, PRIMARY KEY (l_orderkey, l_linenumber));
CREATE INDEX lineitem_part_supp ON lineitem (l_partkey, l_suppkey);
CREATE INDEX orders_cust ON orders (o_custkey);

INSERT INTO region VALUES (0, 'AFRICA', 'lar deposits'), (1, 'AMERICA', 'hs use ironic'), (2, 'ASIA', 'ges thinly even'),
    (3, 'EUROPE', 'ly final courts'), (4, 'MIDDLE EAST', 'uickly special accounts');
INSERT INTO nation SELECT n - 1, name, region, 'nation comment' FROM unnest(
    ARRAY['ALGERIA', 'ARGENTINA', 'BRAZIL', 'CANADA', 'EGYPT', 'ETHIOPIA', 'FRANCE', 'GERMANY', 'INDIA', 'INDONESIA', 'IRAN', 'IRAQ',
          'JAPAN', 'JORDAN', 'KENYA', 'MOROCCO', 'MOZAMBIQUE', 'PERU', 'CHINA', 'ROMANIA', 'SAUDI ARABIA', 'VIETNAM', 'RUSSIA',
          'UNITED KINGDOM', 'UNITED STATES'],
    ARRAY[0, 1, 1, 1, 4, 0, 3, 3, 2, 2, 4, 4, 2, 4, 0, 0, 0, 1, 2, 3, 4, 2, 3, 3, 1]) WITH ORDINALITY AS t(name, region, n);

-- text pools
CREATE TEMPORARY TABLE tpch_words AS SELECT ARRAY['furiously', 'special', 'requests', 'carefully', 'final', 'deposits', 'blithely',
    'ironic', 'packages', 'quickly', 'express', 'accounts', 'pending', 'regular', 'theodolites', 'slyly', 'bold', 'pinto',
    'beans', 'even', 'unusual', 'silent', 'foxes', 'dolphins'] AS w,
    ARRAY['almond', 'antique', 'aquamarine', 'azure', 'beige', 'bisque', 'black', 'blanched', 'blue', 'blush', 'brown', 'burlywood',
    'burnished', 'chartreuse', 'chiffon', 'chocolate', 'coral', 'cornflower', 'cornsilk', 'cream', 'cyan', 'dark', 'deep', 'dim',
    'dodger', 'drab', 'firebrick', 'floral', 'forest', 'frosted', 'gainsboro', 'ghost', 'goldenrod', 'green', 'grey', 'honeydew',
    'hot', 'indian', 'ivory', 'khaki', 'lace', 'lavender', 'lawn', 'lemon', 'light', 'lime', 'linen', 'magenta', 'maroon',
    'medium', 'metallic', 'midnight', 'mint', 'misty', 'moccasin', 'navajo', 'navy', 'olive', 'orange', 'orchid', 'pale',
    'papaya', 'peach', 'peru', 'pink', 'plum', 'powder', 'puff', 'purple', 'red', 'rose', 'rosy', 'royal', 'saddle', 'salmon',
    'sandy', 'seashell', 'sienna', 'sky', 'slate', 'smoke', 'snow', 'spring', 'steel', 'tan', 'thistle', 'tomato', 'turquoise',
    'violet', 'wheat', 'white', 'yellow'] AS colors;

CREATE FUNCTION pg_temp.words(n int) RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT string_agg(w[1 + floor(random() * cardinality(w))::int], ' ') FROM tpch_words, generate_series(1, n) $$;
CREATE FUNCTION pg_temp.phone(nation int) RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT (nation + 10) || '-' || (100 + floor(random() * 900))::int || '-' || (100 + floor(random() * 900))::int || '-'
          || (1000 + floor(random() * 9000))::int $$;

-- Orders first..last with their lines (the load, and RF1's new orders): o_totalprice and o_orderstatus
-- from the lines, as dbgen computes them.
CREATE FUNCTION pg_temp.orders(first int, last int) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    customers int := (SELECT max(c_custkey) FROM customer);
    parts int := (SELECT max(p_partkey) FROM part);
    suppliers int := (SELECT max(s_suppkey) FROM supplier);
BEGIN
    INSERT INTO orders
    SELECT o, c - CASE WHEN c % 3 = 0 THEN 1 ELSE 0 END, 'O', 0,
           DATE '1992-01-01' + floor(random() * 2406)::int,
           (ARRAY['1-URGENT', '2-HIGH', '3-MEDIUM', '4-NOT SPECIFIED', '5-LOW'])[1 + floor(random() * 5)::int],
           'Clerk#' || lpad((1 + floor(random() * 1000))::int::text, 9, '0'), 0,
           CASE WHEN random() < 0.01 THEN 'special ' || pg_temp.words(1) || ' requests' ELSE pg_temp.words(4) END
      FROM generate_series(first, last) o, LATERAL (SELECT 2 + floor(random() * (customers - 1))::int AS c WHERE o > 0) cc;
    INSERT INTO lineitem
    SELECT o.o_orderkey, li.p, (li.p + (li.i * (suppliers / 4 + (li.p - 1) / suppliers))) % suppliers + 1, li.n,
           li.q, li.q * ((90000 + ((li.p / 10) % 20001) + 100 * (li.p % 1000)) / 100.0),
           round((floor(random() * 11) / 100.0)::numeric, 2), round((floor(random() * 9) / 100.0)::numeric, 2),
           CASE WHEN o.o_orderdate + li.ship + li.receipt <= DATE '1995-06-17' THEN (ARRAY['R', 'A'])[1 + floor(random() * 2)::int] ELSE 'N' END,
           CASE WHEN o.o_orderdate + li.ship > DATE '1995-06-17' THEN 'O' ELSE 'F' END,
           o.o_orderdate + li.ship, o.o_orderdate + 30 + floor(random() * 61)::int, o.o_orderdate + li.ship + li.receipt,
           (ARRAY['DELIVER IN PERSON', 'COLLECT COD', 'NONE', 'TAKE BACK RETURN'])[1 + floor(random() * 4)::int],
           (ARRAY['REG AIR', 'AIR', 'RAIL', 'SHIP', 'TRUCK', 'MAIL', 'FOB'])[1 + floor(random() * 7)::int],
           left(pg_temp.words(3), 44)
      FROM orders o,
           LATERAL (SELECT n, 1 + floor(random() * parts)::int AS p, floor(random() * 4)::int AS i, 1 + floor(random() * 50)::int AS q,
                           1 + floor(random() * 121)::int AS ship, 1 + floor(random() * 30)::int AS receipt
                      FROM generate_series(1, 1 + floor(random() * 7)::int + o.o_orderkey * 0) n) li
     WHERE o.o_orderkey BETWEEN first AND last;
    UPDATE orders o
       SET o_totalprice = t.total, o_orderstatus = t.status
      FROM (SELECT l_orderkey, round(sum(l_extendedprice * (1 + l_tax) * (1 - l_discount)), 2) AS total,
                   CASE WHEN bool_and(l_linestatus = 'F') THEN 'F' WHEN bool_and(l_linestatus = 'O') THEN 'O' ELSE 'P' END AS status
              FROM lineitem WHERE l_orderkey BETWEEN first AND last GROUP BY l_orderkey) t
     WHERE o.o_orderkey = t.l_orderkey;
END
$fn$;

-- One refresh round's changes, in one transaction: RF1 (new orders with their lines), RF2 (the oldest
-- orders and their lines deleted), each `fraction` of the orders, plus updates of as many orders'
-- lines (discounts) and customers (balances), and of `fraction` of the part suppliers (supply cost
-- and available quantity) and of the suppliers (balance, at least one): so that every query but
-- those over part, nation and region alone has changes to maintain.
CREATE FUNCTION pg_temp.round(fraction float8) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    n int := greatest(1, round((SELECT count(*) FROM orders) * fraction)::int);
    top int := (SELECT max(o_orderkey) FROM orders);
BEGIN
    PERFORM pg_temp.orders(top + 1, top + n);
    DELETE FROM lineitem WHERE l_orderkey IN (SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT n);
    DELETE FROM orders WHERE o_orderkey IN (SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT n);
    UPDATE lineitem SET l_discount = round((floor(random() * 11) / 100.0)::numeric, 2)
     WHERE l_orderkey IN (SELECT o_orderkey FROM orders TABLESAMPLE BERNOULLI (100 * fraction));
    UPDATE customer SET c_acctbal = round((random() * 10998.99 - 999.99)::numeric, 2)
     WHERE c_custkey IN (SELECT c_custkey FROM customer TABLESAMPLE BERNOULLI (100 * fraction));
    UPDATE partsupp SET ps_supplycost = round((1 + random() * 999)::numeric, 2), ps_availqty = 1 + floor(random() * 9999)::int
     WHERE (ps_partkey, ps_suppkey) IN (SELECT ps_partkey, ps_suppkey FROM partsupp TABLESAMPLE BERNOULLI (100 * fraction));
    UPDATE supplier SET s_acctbal = round((random() * 10998.99 - 999.99)::numeric, 2)
     WHERE s_suppkey IN (SELECT s_suppkey FROM supplier TABLESAMPLE BERNOULLI (100 * fraction)
                         UNION SELECT 1 + floor(random() * (SELECT count(*) FROM supplier))::int);
END
$fn$;
