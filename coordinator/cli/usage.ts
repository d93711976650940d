/** `countapp --help`. The first line keeps the form the cluster has always been started with. */
export const USAGE = `Usage: countapp [--config PATH]
       countapp run [--config PATH]
       countapp status [--config PATH | --url URL] [--json]
       countapp count [--config PATH | --url URL] [--json] TENANT...
       countapp post [--config PATH | --url URL] [--batch N] [--concurrency N] FILE|-
       countapp worker --config PATH --port N [--host ADDR]
       countapp --help | --version

Commands:
  run (the default)  run a cluster in the foreground: this coordinator on the config's
                     port and one worker process per local worker URL. The config file
                     is watched; edits take effect while it runs. Ctrl-C stops it.
  status             the cluster's workers as a table (like \`pm2 ls\`); exit 3 when it
                     is not ready (no live worker), 1 when it cannot be reached
  count              each tenant's distinct count, one "TENANT<TAB>COUNT" line each
  post               add the items of FILE (or standard input: -): a JSON array of
                     {"id","tenant"} objects, or JSON Lines (one item, or one array of
                     items, per line); sent in batches, with a progress line and a summary
  worker             a worker on another host (for a remote \`workers\` entry);
                     \`countapp worker --help\` explains --port and --host

Options:
  -c, --config PATH  the config file (default: ./config.yaml); status, count and post
                     reach the coordinator at its \`host\` and \`port\`
  -u, --url URL      the coordinator's URL instead (default: from the config, or
                     http://127.0.0.1:5000 when there is no ./config.yaml)
      --json         print the JSON answer instead of text
  -b, --batch N      items per batch (default 1000; at most the server's max_batch_items)
  -j, --concurrency N  batches in flight at once (default 4)
  -h, --help         this text
  -v, --version      the version`;
