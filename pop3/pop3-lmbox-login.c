/*
 * pop3-lmbox-login.c: LOGIN-DELAY (RFC 2449) and the user's last POP3
 * login time in the store ("pop3.last_login").
 *
 * pop3 answers PASS with "+OK Logged in." from its own code, before (or,
 * with pop3_lock_session, after) it creates the user's namespaces, and a
 * module has no command hook there.  So when a delay is configured the
 * client's output is held in a buffer from the moment the client exists;
 * once the namespaces (and so the INBOX's store) exist the check runs:
 *   - allowed: the login time is written to the store, the held output
 *     goes to the client and the output is the socket again;
 *   - refused: "-ERR [LOGIN-DELAY] ..." goes to the client instead, input
 *     is no longer read, and the session ends at the next ioloop turn.
 *     The session's INBOX is opened read-only and looks empty (see
 *     pop3-lmbox-retention.c), so nothing in the mailbox changes and the
 *     refusal costs no walk over the messages.  pop3.last_login keeps the
 *     last successful login.
 * (With rawlog_dir set, the output side of the rawlog ends at the release.)
 * Without a delay nothing needs the login time before the session ends, so
 * it is written then, after pop3 has answered QUIT: the bookkeeping costs a
 * login nothing (a session killed with SIGKILL leaves it unrecorded).  With
 * a delay it is written at login, one small LMDB commit right after "+OK"
 * went out (so over a real network it overlaps the client's round trip).
 * Two logins at the same instant may both pass: the store has no
 * compare-and-set, and a login costs one small LMDB commit, no lock.
 */
#include "lib.h"
#include "buffer.h"
#include "ioloop.h"
#include "ostream.h"
#include "pop3-lmbox-plugin.h"

void pop3_lmbox_login_hold(struct pop3_lmbox_client *pclient)
{
	struct client *client = pclient->client;

	i_assert(pclient->real_output == NULL);
	pclient->real_output = client->output;
	pclient->held = buffer_create_dynamic(client->pool, 128);
	client->output = o_stream_create_buffer(pclient->held);
}

/* Put the socket back as the client's output, dropping what was held. */
static void pop3_lmbox_login_unhold(struct pop3_lmbox_client *pclient)
{
	struct client *client = pclient->client;

	o_stream_destroy(&client->output);
	client->output = pclient->real_output;
	pclient->real_output = NULL;
}

void pop3_lmbox_login_release(struct pop3_lmbox_client *pclient)
{
	if (pclient->real_output == NULL || pclient->refused)
		return;
	o_stream_nsend(pclient->real_output, pclient->held->data,
		       pclient->held->used);
	pop3_lmbox_login_unhold(pclient);
}

static void pop3_lmbox_refused_timeout(struct pop3_lmbox_client *pclient)
{
	timeout_remove(&pclient->to_refused);
	client_destroy(pclient->client, "Login refused: LOGIN-DELAY");
}

static void pop3_lmbox_login_refuse(struct pop3_lmbox_client *pclient,
				    int64_t since_last)
{
	struct client *client = pclient->client;
	unsigned int wait = pclient->login_delay_secs - since_last;

	pclient->refused = TRUE;
	e_info(client->user->event, "pop3_lmbox: LOGIN-DELAY: login refused, "
	       "last login %"PRId64" s ago, minimum %u s between logins",
	       since_last, pclient->login_delay_secs);
	o_stream_nsend_str(pclient->real_output, t_strdup_printf(
		"-ERR [LOGIN-DELAY] Minimum time between logins is %u seconds, "
		"try again in %u seconds.\r\n",
		pclient->login_delay_secs, wait));
	(void)o_stream_flush(pclient->real_output);
	/* pop3 goes on initializing the session (it can't be stopped from
	   here); it must not read commands, and it ends soon */
	io_remove(&client->io);
	pclient->to_refused = timeout_add_short(0, pop3_lmbox_refused_timeout,
						pclient);
}

static void pop3_lmbox_login_record(struct pop3_lmbox_client *pclient)
{
	int64_t now = pclient->login_time;

	pclient->login_time = 0;
	if (now <= 0 || pclient->store == NULL)
		return;
	if (lmbox_store_set_u64(pclient->store, POP3_LMBOX_LAST_LOGIN,
				(uint64_t)now) < 0) {
		e_error(pclient->client->user->event,
			"pop3_lmbox: Writing %s failed: %s",
			POP3_LMBOX_LAST_LOGIN,
			lmbox_store_errmsg(pclient->store));
	}
}

void pop3_lmbox_login_check(struct pop3_lmbox_client *pclient,
			    struct lmbox_store *store)
{
	struct mail_user *user = pclient->client->user;
	int64_t now = pop3_lmbox_now(pclient);
	uint64_t last = 0;
	int ret;

	if (pclient->login_delay_secs > 0) {
		ret = lmbox_store_get_u64(store, POP3_LMBOX_LAST_LOGIN, &last);
		if (ret == LMBOX_ERR_NOTFOUND) {
			last = 0;
		} else if (ret < 0) {
			/* can't tell: let the login in rather than lock the
			   user out over bookkeeping */
			e_error(user->event, "pop3_lmbox: Reading %s failed: %s",
				POP3_LMBOX_LAST_LOGIN,
				lmbox_store_errmsg(store));
			last = 0;
		}
		if (last != 0 && now >= (int64_t)last &&
		    now - (int64_t)last < (int64_t)pclient->login_delay_secs) {
			pop3_lmbox_login_refuse(pclient, now - (int64_t)last);
			return;
		}
	}
	pclient->store = store;
	pclient->login_time = now;
	/* "+OK" first: the commit then overlaps the client's round trip */
	pop3_lmbox_login_release(pclient);
	if (pclient->login_delay_secs > 0)
		pop3_lmbox_login_record(pclient);
}

void pop3_lmbox_login_deinit(struct pop3_lmbox_client *pclient)
{
	timeout_remove(&pclient->to_refused);
	/* the user (and so the store) is still there */
	if (!pclient->refused)
		pop3_lmbox_login_record(pclient);
	if (pclient->real_output == NULL)
		return;
	if (pclient->refused)
		pop3_lmbox_login_unhold(pclient);
	else {
		/* the session ended before the check (e.g. namespace
		   errors): what pop3 said goes out, as without the module */
		pop3_lmbox_login_release(pclient);
	}
}
