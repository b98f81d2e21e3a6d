// Package client is the request-reply client a workflow service embeds:
// it persists each request in a store.Store before sending it, waits for
// the outcome through the store, and hands outcomes to callback handlers
// at least once, on any replica, across restarts.
//
// # Requests
//
// Request, Send, Gather and Stream register a correlation first and send
// only once the store has it; when the transport fails, the correlation is
// cancelled with the reason. Replies come back to the service's ReplyTo
// address and Run delivers them to the store, whichever replica takes
// them, so a waiter on any replica wakes (through the store's Subscribe;
// polling only when the subscription is broken). A reply whose waiter is
// gone still decides the correlation, and its handler gets the outcome.
//
// # Deadlines and heartbeats
//
// The store decides at the stored deadline, with its clock; a waiter never
// decides before it. Extend moves the deadline of a pending correlation
// (the heartbeat of slow work, from any replica): waiters learn of it from
// the store's events, or by re-reading when their alarm goes off, and keep
// waiting. At the stored deadline a waiter asks the store, which gives the
// correlation its deadline outcome in the same write (no reaper needed);
// from then on a reply is late, and Extend and Cancel return
// store.ErrNotPending. Cancel decides a pending correlation as cancelled.
//
// # Namespaces
//
// A client works in one namespace (Config.Namespace, default
// store.DefaultNamespace): it registers its correlations there, and
// addresses every one it waits on, extends, cancels or takes a reply for
// there, so the same ID in another namespace is another correlation. A
// request carries its namespace and a responder answers with it; a client
// drops a reply for another namespace, so clients of different namespaces
// need different reply addresses (Config.Service or Config.ReplyTo).
// Callback handlers are the exception: Run claims the due outcomes of
// every namespace of the store, by handler name.
//
// # Callback handlers
//
// A correlation registered with Options.Handler has its outcome
// (completed, timed out, cancelled) dispatched to the HandlerFunc of that
// name: claimed with a lease by one instance, retried with backoff when it
// fails, dead after MaxAttempts. On start Run dispatches what was decided
// while no instance ran, and takes over the leases of instances that died.
//
// # Responders
//
// Serve and ServeStream answer requests: the reply, or an error reply
// carrying the error text, goes to the request's ReplyTo with its
// correlation ID and namespace. A request delivered twice is answered
// twice; the store counts the second answer as a duplicate.
//
// # Transports
//
// Transport is two methods, so that any broker can be adapted:
// memtransport runs in process, redisstream on Redis Streams.
package client
