// node-postgres (npm `pg`) through Watchgate: `node query.mjs postgresql://user:secret@host:port/db`
//
// Runs a parameterized query (extended protocol), a simple query (no parameters: one Query
// message, here with two statements), and a transaction that inserts a row and rolls it back,
// then prints one JSON document with what each returned. Exit 1 with the error on stderr.
import pg from "pg";

const url = process.argv[2];
if (!url) {
  console.error("usage: node query.mjs CONNECTION_STRING");
  process.exit(2);
}

const client = new pg.Client({ connectionString: url, application_name: "node-pg-client" });
await client.connect();
try {
  const parameterized = await client.query({
    text: "SELECT id, name FROM items WHERE id = ANY($1::int[]) ORDER BY id",
    values: [[2, 3, 5]],
  });
  // No values: node-postgres sends a simple Query, so several statements are allowed.
  const simple = await client.query("SELECT count(*)::int AS n FROM items; SELECT 'two' AS second");
  await client.query("BEGIN");
  const inserted = await client.query(
    "INSERT INTO items (id, name) VALUES ($1, $2) RETURNING id, name",
    [9001, "from node"],
  );
  const inside = await client.query("SELECT count(*)::int AS n FROM items WHERE id = $1", [9001]);
  await client.query("ROLLBACK");
  const after = await client.query("SELECT count(*)::int AS n FROM items WHERE id = $1", [9001]);
  const server = await client.query("SHOW server_version");
  console.log(
    JSON.stringify({
      parameterized: parameterized.rows,
      simple: simple.map((r) => r.rows),
      transaction: {
        inserted: inserted.rows,
        inside: inside.rows[0].n,
        after_rollback: after.rows[0].n,
      },
      server_version: server.rows[0].server_version,
    }),
  );
} finally {
  await client.end();
}
