/*
 * Private to server/: the background thread that signs audit checkpoints.
 * Every audit.checkpoint_interval seconds (at least every 250 ms when the
 * interval is 0) it signs a checkpoint if the tree has grown and the latest
 * checkpoint is at least one interval old (cv_audit_checkpoint_tick); the
 * tree size is read from the database each time, so entries appended by
 * CLI processes are covered too. At stop it signs a final one if needed.
 */
#ifndef CASEVAULT_SERVER_CHECKPOINTER_H
#define CASEVAULT_SERVER_CHECKPOINTER_H

#include "casevault/status.h"

struct cv_server;
struct cv_checkpointer;

/* cv_checkpointer_start - start the thread. Out: *out. Errors: CV_E_NOMEM,
 * CV_E_INTERNAL (thread creation failed). */
cv_status cv_checkpointer_start(struct cv_server *srv, struct cv_checkpointer **out);

/* cv_checkpointer_stop - stop and join the thread, sign a last checkpoint
 * if the tree grew, free. NULL is a no-op. */
void cv_checkpointer_stop(struct cv_checkpointer *cp);

#endif
