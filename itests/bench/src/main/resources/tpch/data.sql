-- Rows for scale factor {SF}: {SUPPLIERS} suppliers, {PARTS} parts (4 suppliers each), {CUSTOMERS} customers
-- (those with a key divisible by 3 place no order, as in the spec), {ORDERS} orders of 1 to 7 lines.
SELECT setseed(0.4242);
INSERT INTO supplier
SELECT s, 'Supplier#' || lpad(s::text, 9, '0'), pg_temp.words(2), nk, pg_temp.phone(nk),
       round((random() * 10998.99 - 999.99)::numeric, 2),
       CASE WHEN s % 53 = 7 THEN 'carefully Customer slyly Complaints ' || pg_temp.words(2)
            WHEN s % 53 = 11 THEN 'blithely Customer ironic Recommends ' || pg_temp.words(2)
            ELSE pg_temp.words(5) END
  FROM generate_series(1, {SUPPLIERS}) s, LATERAL (SELECT floor(random() * 25)::int AS nk) n;

INSERT INTO part
SELECT p,
       (SELECT string_agg(colors[1 + floor(random() * cardinality(colors))::int], ' ') FROM tpch_words, generate_series(1, 5) g WHERE g > p * 0),
       'Manufacturer#' || m, 'Brand#' || m || (1 + floor(random() * 5))::int,
       (ARRAY['STANDARD', 'SMALL', 'MEDIUM', 'LARGE', 'ECONOMY', 'PROMO'])[1 + floor(random() * 6)::int] || ' '
           || (ARRAY['ANODIZED', 'BURNISHED', 'PLATED', 'POLISHED', 'BRUSHED'])[1 + floor(random() * 5)::int] || ' '
           || (ARRAY['TIN', 'NICKEL', 'BRASS', 'STEEL', 'COPPER'])[1 + floor(random() * 5)::int],
       1 + floor(random() * 50)::int,
       (ARRAY['SM', 'LG', 'MED', 'JUMBO', 'WRAP'])[1 + floor(random() * 5)::int] || ' '
           || (ARRAY['CASE', 'BOX', 'BAG', 'JAR', 'PKG', 'PACK', 'CAN', 'DRUM'])[1 + floor(random() * 8)::int],
       (90000 + ((p / 10) % 20001) + 100 * (p % 1000)) / 100.0,
       left(pg_temp.words(2), 23)
  FROM generate_series(1, {PARTS}) p, LATERAL (SELECT 1 + floor(random() * 5)::int AS m WHERE p > 0) mm;

INSERT INTO partsupp
SELECT p, (p + (i * ({SUPPLIERS} / 4 + (p - 1) / {SUPPLIERS}))) % {SUPPLIERS} + 1,
       1 + floor(random() * 9999)::int, round((1 + random() * 999)::numeric, 2), pg_temp.words(6)
  FROM generate_series(1, {PARTS}) p, generate_series(0, 3) i
ON CONFLICT DO NOTHING;

INSERT INTO customer
SELECT c, 'Customer#' || lpad(c::text, 9, '0'), pg_temp.words(2), nk, pg_temp.phone(nk),
       round((random() * 10998.99 - 999.99)::numeric, 2),
       (ARRAY['AUTOMOBILE', 'BUILDING', 'FURNITURE', 'MACHINERY', 'HOUSEHOLD'])[1 + floor(random() * 5)::int],
       pg_temp.words(6)
  FROM generate_series(1, {CUSTOMERS}) c, LATERAL (SELECT floor(random() * 25)::int AS nk WHERE c > 0) n;

SELECT pg_temp.orders(1, {ORDERS});
