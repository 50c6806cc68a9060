"""The desktop app's services: everything it does that is not drawing.

Nothing here imports Qt. The views call these through qasync slots and draw what they report:

- `account.Account`: one user signed in to one central (browser sign-in, keyring, refresh);
- `live.LiveEvents`: the user's live event stream, reconnected whenever it drops;
- `proxies.ProxyController`: local proxies as child processes, fed fresh tokens on stdin;
- `query.QueryRunner`: the analyst tab's queries, streamed in batches through a local proxy;
- `history.QueryHistory`: the last queries run, as JSON lines in the profile directory;
- `replay` and `review`: the replay viewer's engine and its access to `/api/review`;
- `listeners.notify`: how they call their listeners.
"""
