/*
 * pop3-lmbox-plugin.c: the pop3_lmbox module (lib20_pop3_lmbox_plugin.so),
 * POP3 session policy for users whose INBOX is lmbox.
 *
 * Loaded by the pop3 process only (protocol pop3 { mail_plugins =
 * $mail_plugins pop3_lmbox }); needs the lmbox plugin loaded (declared
 * dependency: without it Dovecot refuses the module and logs "Plugin lmbox
 * must be loaded also").  A user whose INBOX is not lmbox gets one warning
 * and a session without the module.
 *
 * Settings (plugin { } or userdb fields), all off by default:
 *   lmbox_pop3_login_delay = <interval>   refuse logins sooner than this
 *                                         after the last one (LOGIN-DELAY)
 *   lmbox_pop3_expire = <days>            at QUIT, delete messages first
 *                                         retrieved more than <days> ago
 *                                         (0: every retrieved message)
 *   lmbox_pop3_test_clock_file = <path>   tests only: "now" is the unix
 *                                         time written in this file
 * A bad value is logged as an error and the setting stays off.
 */
#include "lib.h"
#include "ioloop.h"
#include "settings-parser.h"
#include "mail-namespace.h"
#include "mail-storage-hooks.h"
#include "pop3-lmbox-plugin.h"

#include <fcntl.h>
#include <unistd.h>

struct pop3_lmbox_user {
	union mail_user_module_context module_ctx;
	struct pop3_lmbox_client *pclient;
};

#define POP3_LMBOX_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, pop3_lmbox_user_module)
#define POP3_LMBOX_CLIENT_CONTEXT(obj) \
	MODULE_CONTEXT(obj, pop3_lmbox_pop3_module)

static MODULE_CONTEXT_DEFINE_INIT(pop3_lmbox_user_module,
				  &mail_user_module_register);
static MODULE_CONTEXT_DEFINE_INIT(pop3_lmbox_pop3_module,
				  &pop3_module_register);

const char *pop3_lmbox_plugin_version = DOVECOT_ABI_VERSION;
const char *pop3_lmbox_plugin_dependencies[] = { "lmbox", NULL };
const char pop3_lmbox_plugin_binary_dependency[] = "pop3";

void pop3_lmbox_plugin_init(struct module *module);
void pop3_lmbox_plugin_deinit(void);

static struct module *pop3_lmbox_module;
static pop3_client_created_func_t *next_hook_client_created;

struct pop3_lmbox_client *pop3_lmbox_client_get(struct mail_user *user)
{
	struct pop3_lmbox_user *puser = POP3_LMBOX_USER_CONTEXT(user);

	if (puser == NULL || puser->pclient->inactive)
		return NULL;
	return puser->pclient;
}

int64_t pop3_lmbox_now(struct pop3_lmbox_client *pclient)
{
	char buf[32];
	long long value;
	ssize_t len;
	int fd;

	if (pclient->test_clock_path == NULL)
		return ioloop_time;
	fd = open(pclient->test_clock_path, O_RDONLY);
	if (fd == -1) {
		e_error(pclient->client->user->event,
			"pop3_lmbox: open(%s) failed: %m",
			pclient->test_clock_path);
		return ioloop_time;
	}
	len = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	buf[len < 0 ? 0 : len] = '\0';
	if (len <= 0 || str_to_llong(t_strcut(buf, '\n'), &value) < 0) {
		e_error(pclient->client->user->event,
			"pop3_lmbox: %s: not a unix time", pclient->test_clock_path);
		return ioloop_time;
	}
	return value;
}

static void pop3_lmbox_read_settings(struct pop3_lmbox_client *pclient)
{
	struct mail_user *user = pclient->client->user;
	const char *str, *error;
	unsigned int secs;

	str = lmbox_setting_str(user, NULL, "lmbox_pop3_login_delay");
	if (str != NULL && *str != '\0') {
		/* a bare number is seconds, as in RFC 2449's LOGIN-DELAY */
		if (str_to_uint(str, &secs) < 0 &&
		    lmbox_parse_interval(str, &secs, &error) < 0) {
			e_error(user->event, "pop3_lmbox: "
				"Invalid lmbox_pop3_login_delay setting '%s': %s "
				"(LOGIN-DELAY is off)", str, error);
		} else {
			pclient->login_delay_secs = secs;
		}
	}
	str = lmbox_setting_str(user, NULL, "lmbox_pop3_expire");
	if (str != NULL && *str != '\0') {
		if (str_to_uint(str, &pclient->expire_days) < 0 ||
		    pclient->expire_days > 100000) {
			e_error(user->event, "pop3_lmbox: "
				"Invalid lmbox_pop3_expire setting '%s': "
				"expected a number of days (expiry is off)", str);
		} else {
			pclient->expire_enabled = TRUE;
		}
	}
	str = lmbox_setting_str(user, NULL, "lmbox_pop3_test_clock_file");
	if (str != NULL && *str != '\0')
		pclient->test_clock_path = p_strdup(pclient->client->pool, str);
}

static void pop3_lmbox_client_destroy(struct client *client, const char *reason)
{
	struct pop3_lmbox_client *pclient = POP3_LMBOX_CLIENT_CONTEXT(client);

	pop3_lmbox_login_deinit(pclient);
	pclient->module_ctx.super.destroy(client, reason);
}

static void pop3_lmbox_client_created(struct client **clientp)
{
	struct client *client = *clientp;
	struct pop3_lmbox_client *pclient;
	struct pop3_lmbox_user *puser;

	if (mail_user_is_plugin_loaded(client->user, pop3_lmbox_module)) {
		pclient = p_new(client->pool, struct pop3_lmbox_client, 1);
		pclient->client = client;
		pclient->module_ctx.super = client->v;
		client->v.destroy = pop3_lmbox_client_destroy;
		p_array_init(&pclient->retrs, client->pool, 16);
		MODULE_CONTEXT_SET(client, pop3_lmbox_pop3_module, pclient);

		puser = p_new(client->user->pool, struct pop3_lmbox_user, 1);
		puser->pclient = pclient;
		MODULE_CONTEXT_SET(client->user, pop3_lmbox_user_module, puser);

		pop3_lmbox_read_settings(pclient);
		/* the "+OK Logged in." pop3 sends next must wait until the
		   store has answered whether this login is too soon */
		if (pclient->login_delay_secs > 0)
			pop3_lmbox_login_hold(pclient);
	}
	if (next_hook_client_created != NULL)
		next_hook_client_created(clientp);
}

/* The user's namespaces exist now (pop3 creates them just before or just
   after its "+OK Logged in.", which is held): find the INBOX's store. */
static void pop3_lmbox_namespaces_created(struct mail_namespace *namespaces)
{
	struct mail_user *user = namespaces->user;
	struct pop3_lmbox_user *puser = POP3_LMBOX_USER_CONTEXT(user);
	struct pop3_lmbox_client *pclient;
	struct mail_namespace *ns;
	struct lmbox_store *store;

	if (puser == NULL)
		return;
	pclient = puser->pclient;
	ns = mail_namespace_find_inbox(namespaces);
	if (ns == NULL || ns->storage == NULL ||
	    lmbox_plugin_is_lmbox_storage(ns->storage) == 0) {
		e_warning(user->event, "pop3_lmbox: INBOX is not an lmbox "
			  "mailbox (storage %s): the module is inactive for "
			  "this session (no LOGIN-DELAY, no expiry)",
			  ns == NULL || ns->storage == NULL ? "none" :
			  ns->storage->name);
		pclient->inactive = TRUE;
		pop3_lmbox_login_release(pclient);
		return;
	}
	store = lmbox_plugin_storage_get_store(ns->storage);
	if (store == NULL) {
		/* logged by the storage; the INBOX open will fail and pop3
		   tells the client */
		pop3_lmbox_login_release(pclient);
		return;
	}
	pop3_lmbox_login_check(pclient, store);
}

static struct mail_storage_hooks pop3_lmbox_mail_storage_hooks = {
	.mail_namespaces_created = pop3_lmbox_namespaces_created,
	.mailbox_allocated = pop3_lmbox_mailbox_allocated,
	.mail_allocated = pop3_lmbox_mail_allocated,
};

void pop3_lmbox_plugin_init(struct module *module)
{
	pop3_lmbox_module = module;
	mail_storage_hooks_add(module, &pop3_lmbox_mail_storage_hooks);
	next_hook_client_created =
		pop3_client_created_hook_set(pop3_lmbox_client_created);
}

void pop3_lmbox_plugin_deinit(void)
{
	mail_storage_hooks_remove(&pop3_lmbox_mail_storage_hooks);
	pop3_client_created_hook_set(next_hook_client_created);
}
