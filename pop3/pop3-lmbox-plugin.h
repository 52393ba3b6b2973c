#ifndef POP3_LMBOX_PLUGIN_H
#define POP3_LMBOX_PLUGIN_H
/*
 * pop3-lmbox-plugin.h: shared state of the pop3_lmbox session module.
 *
 * One struct pop3_lmbox_client per POP3 session, reachable from the pop3
 * client (module context), from its mail user (module context) and from
 * the session's INBOX (mailbox module context).  The role files:
 *   pop3-lmbox-plugin.c     registration, settings, clock, session hooks
 *   pop3-lmbox-login.c      LOGIN-DELAY and pop3.last_login
 *   pop3-lmbox-retention.c  first-RETR times and expiry at QUIT
 */
#include "pop3-common.h"
#include "module-context.h"
#include "mail-user.h"
#include "mail-storage-private.h"
#include "lmbox-plugin.h"
#include "lmbox-compat.h"

/* Store values (lmbox stat shows them). */
#define POP3_LMBOX_LAST_LOGIN "pop3.last_login"
#define POP3_LMBOX_LAST_EXPIRE "pop3.last_expire"

struct pop3_lmbox_retr {
	uint32_t uid;
	int64_t when;
};

struct pop3_lmbox_client {
	union pop3_module_context module_ctx;
	struct client *client;

	/* settings */
	unsigned int login_delay_secs;  /* 0 = off */
	bool expire_enabled;
	unsigned int expire_days;       /* 0 = every retrieved message */
	const char *test_clock_path;    /* test-only fake clock, or NULL */

	/* LOGIN-DELAY: while the check is pending, the pop3 process writes
	   to held_output, and the client's socket is real_output */
	struct ostream *real_output;
	buffer_t *held;
	struct timeout *to_refused;

	/* without LOGIN-DELAY, the login time is written when the session
	   ends (off the client's way); the store stays open until then */
	struct lmbox_store *store;
	int64_t login_time;

	/* the session's INBOX, set when it is allocated */
	struct mailbox *box;
	/* RETRs of this session not written to the store yet */
	ARRAY(struct pop3_lmbox_retr) retrs;

	bool inactive:1;     /* INBOX is not lmbox: module off for the session */
	bool refused:1;      /* LOGIN-DELAY refused this login */
	bool quit_done:1;    /* the QUIT commit was seen */
};

/* pop3-lmbox-plugin.c */
/* The session's client state for user, NULL if the module is not active
   for it. */
struct pop3_lmbox_client *pop3_lmbox_client_get(struct mail_user *user);
/* Unix time now (the test clock if configured). */
int64_t pop3_lmbox_now(struct pop3_lmbox_client *pclient);

/* pop3-lmbox-login.c */
/* Hold the client's output until pop3_lmbox_login_check() decides. */
void pop3_lmbox_login_hold(struct pop3_lmbox_client *pclient);
/* With the INBOX's store known: refuse (LOGIN-DELAY) or record the login
   and let the held output go. */
void pop3_lmbox_login_check(struct pop3_lmbox_client *pclient,
			    struct lmbox_store *store);
/* Let held output go to the client, unless refused. */
void pop3_lmbox_login_release(struct pop3_lmbox_client *pclient);
/* Called when the client is destroyed. */
void pop3_lmbox_login_deinit(struct pop3_lmbox_client *pclient);

/* pop3-lmbox-retention.c */
void pop3_lmbox_mailbox_allocated(struct mailbox *box);
void pop3_lmbox_mail_allocated(struct mail *mail);

#endif
