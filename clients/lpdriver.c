/*
 * lpdriver: a liblinphone user agent driven line by line, for the real-client suite
 * (tests/tests/real_clients.rs). It registers one account through a SIP proxy, publishes the
 * presence it is told to, keeps a friend list (single SUBSCRIBEs, or one list SUBSCRIBE when
 * --rls is given) and prints what liblinphone's API shows about each friend.
 *
 * Built against Debian's liblinphone-dev (5.1.x), whose linphone.pc names no library:
 *   cc -o lpdriver lpdriver.c $(pkg-config --cflags --libs linphone) -llinphone -lbctoolbox
 *
 * Usage:
 *   lpdriver --user alice --domain example.org --proxy 'sip:127.0.0.1:5060;transport=tcp'
 *            [--rls sip:rls@example.org] [--friend LABEL=URI]... [--phone LABEL=NUMBER]...
 *            [--no-publish] [--no-deflate] [--dir DIR] [--debug]
 * --friend and --phone are the contacts the user already has (in the friend list before the
 * account registers); --no-publish registers without ever publishing (PUBLISH disabled);
 * --no-deflate turns liblinphone's body compression off ([sip] handle_content_encoding=none);
 * --dir holds liblinphone's configuration and databases (default: a new /tmp/lpdriver-*);
 * --debug: liblinphone's full log on stderr (default: warnings and errors). liblinphone's log,
 * which it writes on stdout, always goes to stderr: stdout carries only the events below.
 *
 * Commands (stdin, one per line):
 *   publish online|away|busy|onthephone|dnd|offline [NOTE...]
 *   friend LABEL sip:bob@example.org     add a friend (subscribed)
 *   phone LABEL +33612345678             add a friend known only by a phone number
 *   unfriend LABEL                       stop watching a friend (unSUBSCRIBE) and remove it
 *   show LABEL                           print the friend's current FRIEND line
 *   quit                                 (or end of stdin) stop the core and exit
 *
 * Output (stdout, one event per line; values are single words or "quoted" with \" and \\):
 *   READY
 *   REGISTRATION state=progress|ok|cleared|failed|none
 *   PUBLISH state=progress|ok|error|expiring|cleared|none
 *   PRESENCE label=L uri=URI_OR_TEL basic=open|closed activity=NAME consolidated=C note="…"
 *            contact=URI       (one address or phone number of a friend received presence)
 *   FRIEND label=L basic=… activity=… consolidated=… note="…" contact=… received=yes|no
 *            (the friend's presence model and consolidated presence after any change;
 *            received: whether any presence was received for it)
 *   OK command / ERROR text
 * activity is the first activity's name or "none"; consolidated is online, busy, dnd or
 * offline; note is the first note (any language) or ""; contact is the model's contact or "".
 */
#include <linphone/core.h>
#include <linphone/friend.h>
#include <linphone/friendlist.h>
#include <linphone/presence.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRIENDS 64

static struct {
	char label[64];
	LinphoneFriend *f;
} friends[MAX_FRIENDS];
static int nfriends;

static LinphoneCore *lc;
static LinphoneFriendList *flist;
static const char *domain = "example.org";
static int quit_requested;
/* The event stream (the real stdout); liblinphone's own logs, which it prints on stdout, are sent
 * to stderr. */
static FILE *events;
static const char *rls;

static void out(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vfprintf(events, fmt, ap);
	va_end(ap);
	fputc('\n', events);
	fflush(events);
}

/* Appends `s` quoted to buf. */
static void quote(char *buf, size_t size, const char *s) {
	size_t n = strlen(buf);
	if (n + 1 < size) buf[n++] = '"';
	for (; s && *s && n + 3 < size; s++) {
		if (*s == '"' || *s == '\\') buf[n++] = '\\';
		buf[n++] = (*s == '\n' || *s == '\r') ? ' ' : *s;
	}
	if (n + 1 < size) buf[n++] = '"';
	buf[n] = '\0';
}

static const char *activity_name(LinphonePresenceActivityType t) {
	switch (t) {
	case LinphonePresenceActivityAppointment: return "appointment";
	case LinphonePresenceActivityAway: return "away";
	case LinphonePresenceActivityBreakfast: return "breakfast";
	case LinphonePresenceActivityBusy: return "busy";
	case LinphonePresenceActivityDinner: return "dinner";
	case LinphonePresenceActivityHoliday: return "holiday";
	case LinphonePresenceActivityInTransit: return "in-transit";
	case LinphonePresenceActivityLookingForWork: return "looking-for-work";
	case LinphonePresenceActivityLunch: return "lunch";
	case LinphonePresenceActivityMeal: return "meal";
	case LinphonePresenceActivityMeeting: return "meeting";
	case LinphonePresenceActivityOnThePhone: return "on-the-phone";
	case LinphonePresenceActivityOther: return "other";
	case LinphonePresenceActivityPerformance: return "performance";
	case LinphonePresenceActivityPermanentAbsence: return "permanent-absence";
	case LinphonePresenceActivityPlaying: return "playing";
	case LinphonePresenceActivityPresentation: return "presentation";
	case LinphonePresenceActivityShopping: return "shopping";
	case LinphonePresenceActivitySleeping: return "sleeping";
	case LinphonePresenceActivitySpectator: return "spectator";
	case LinphonePresenceActivitySteering: return "steering";
	case LinphonePresenceActivityTravel: return "travel";
	case LinphonePresenceActivityTV: return "tv";
	case LinphonePresenceActivityUnknown: return "unknown";
	case LinphonePresenceActivityVacation: return "vacation";
	case LinphonePresenceActivityWorking: return "working";
	case LinphonePresenceActivityWorship: return "worship";
	}
	return "?";
}

static const char *consolidated_name(LinphoneConsolidatedPresence c) {
	switch (c) {
	case LinphoneConsolidatedPresenceOnline: return "online";
	case LinphoneConsolidatedPresenceBusy: return "busy";
	case LinphoneConsolidatedPresenceDoNotDisturb: return "dnd";
	case LinphoneConsolidatedPresenceOffline: return "offline";
	}
	return "?";
}

/* "basic=… activity=… consolidated=… note=… contact=…" for a model (NULL: nothing received). */
static void describe(char *buf, size_t size, const LinphonePresenceModel *m, LinphoneConsolidatedPresence cons) {
	const char *basic = "none", *activity = "none", *note = "";
	char *contact = NULL;
	if (m) {
		basic = linphone_presence_model_get_basic_status(m) == LinphonePresenceBasicStatusOpen ? "open" : "closed";
		LinphonePresenceActivity *a = linphone_presence_model_get_activity(m);
		if (a) activity = activity_name(linphone_presence_activity_get_type(a));
		LinphonePresenceNote *n = linphone_presence_model_get_note(m, NULL);
		if (n && linphone_presence_note_get_content(n)) note = linphone_presence_note_get_content(n);
		contact = linphone_presence_model_get_contact(m);
	}
	snprintf(buf, size, "basic=%s activity=%s consolidated=%s note=", basic, activity, consolidated_name(cons));
	quote(buf, size, note);
	size_t n = strlen(buf);
	snprintf(buf + n, size - n, " contact=%s", contact && *contact ? contact : "\"\"");
	if (contact) bctbx_free(contact);
}

static const char *label_of(const LinphoneFriend *f) {
	for (int i = 0; i < nfriends; i++)
		if (friends[i].f == f) return friends[i].label;
	const char *name = linphone_friend_get_name(f);
	return name ? name : "?";
}

static void print_friend(const LinphoneFriend *f) {
	char buf[2048];
	const LinphonePresenceModel *m = linphone_friend_get_presence_model(f);
	describe(buf, sizeof(buf), m, linphone_friend_get_consolidated_presence(f));
	out("FRIEND label=%s %s received=%s", label_of(f), buf, linphone_friend_is_presence_received(f) ? "yes" : "no");
}

static void on_presence_for_uri(LinphoneCore *core, LinphoneFriend *f, const char *uri_or_tel,
                                const LinphonePresenceModel *m) {
	(void)core;
	char buf[2048];
	describe(buf, sizeof(buf), m, m ? linphone_presence_model_get_consolidated_presence(m) : LinphoneConsolidatedPresenceOffline);
	out("PRESENCE label=%s uri=%s %s", label_of(f), uri_or_tel ? uri_or_tel : "?", buf);
}

static void on_presence(LinphoneCore *core, LinphoneFriend *f) {
	(void)core;
	print_friend(f);
}

static void on_registration(LinphoneCore *core, LinphoneAccount *account, LinphoneRegistrationState state,
                            const char *message) {
	(void)core;
	(void)account;
	static const char *names[] = {"none", "progress", "ok", "cleared", "failed"};
	out("REGISTRATION state=%s message=\"%s\"", state <= 4 ? names[state] : "?", message ? message : "");
}

static void on_publish(LinphoneCore *core, LinphoneEvent *ev, LinphonePublishState state) {
	(void)core;
	(void)ev;
	static const char *names[] = {"none", "progress", "ok", "error", "expiring", "cleared"};
	out("PUBLISH state=%s", state <= 5 ? names[state] : "?");
}

static int publish(const char *status, const char *note) {
	LinphonePresenceModel *m;
	const char *n = (note && *note) ? note : NULL;
	if (strcmp(status, "online") == 0) {
		m = linphone_presence_model_new();
		linphone_presence_model_set_basic_status(m, LinphonePresenceBasicStatusOpen);
		if (n) linphone_presence_model_add_note(m, n, "en");
	} else if (strcmp(status, "away") == 0) {
		m = linphone_presence_model_new_with_activity_and_note(LinphonePresenceActivityAway, NULL, n, n ? "en" : NULL);
	} else if (strcmp(status, "busy") == 0) {
		m = linphone_presence_model_new_with_activity_and_note(LinphonePresenceActivityBusy, NULL, n, n ? "en" : NULL);
	} else if (strcmp(status, "onthephone") == 0) {
		m = linphone_presence_model_new_with_activity_and_note(LinphonePresenceActivityOnThePhone, NULL, n,
		                                                       n ? "en" : NULL);
	} else if (strcmp(status, "dnd") == 0) {
		/* What linphone_core_set_consolidated_presence(DoNotDisturb) publishes: closed + away. */
		m = linphone_presence_model_new();
		linphone_presence_model_set_basic_status(m, LinphonePresenceBasicStatusClosed);
		linphone_presence_model_set_activity(m, LinphonePresenceActivityAway, NULL);
		if (n) linphone_presence_model_add_note(m, n, "en");
	} else if (strcmp(status, "offline") == 0) {
		linphone_core_set_consolidated_presence(lc, LinphoneConsolidatedPresenceOffline);
		return 0;
	} else {
		return -1;
	}
	linphone_core_set_presence_model(lc, m);
	linphone_presence_model_unref(m);
	return 0;
}

static int find_friend(const char *label) {
	for (int i = 0; i < nfriends; i++)
		if (strcmp(friends[i].label, label) == 0) return i;
	return -1;
}

static int add_friend(const char *label, const char *uri, int is_phone) {
	if (nfriends >= MAX_FRIENDS || find_friend(label) >= 0) return -1;
	LinphoneFriend *f;
	if (is_phone) {
		f = linphone_core_create_friend(lc);
		linphone_friend_add_phone_number(f, uri);
	} else {
		f = linphone_core_create_friend_with_address(lc, uri);
		if (!f) return -1;
	}
	linphone_friend_set_name(f, label);
	linphone_friend_enable_subscribes(f, TRUE);
	linphone_friend_set_inc_subscribe_policy(f, LinphoneSPAccept);
	if (linphone_friend_list_add_friend(flist, f) != LinphoneFriendListOK) {
		linphone_friend_unref(f);
		return -1;
	}
	snprintf(friends[nfriends].label, sizeof(friends[nfriends].label), "%s", label);
	friends[nfriends].f = f; /* keeps our reference */
	nfriends++;
	return 0;
}

static int remove_friend(const char *label) {
	int i = find_friend(label);
	if (i < 0) return -1;
	/* Stop watching first (an unSUBSCRIBE, Expires: 0), as an app does when the user removes a
	 * contact: liblinphone does not end the subscription when a friend leaves its list. */
	linphone_friend_edit(friends[i].f);
	linphone_friend_enable_subscribes(friends[i].f, FALSE);
	linphone_friend_done(friends[i].f);
	linphone_friend_list_remove_friend(flist, friends[i].f);
	linphone_friend_unref(friends[i].f);
	friends[i] = friends[--nfriends];
	return 0;
}

static void command(char *line) {
	char *save = NULL;
	char *cmd = strtok_r(line, " \t", &save);
	if (!cmd) return;
	if (strcmp(cmd, "publish") == 0) {
		char *status = strtok_r(NULL, " \t", &save);
		char *note = save; /* the rest of the line */
		while (note && (*note == ' ' || *note == '\t')) note++;
		if (!status || publish(status, note) != 0) {
			out("ERROR publish: unknown status");
			return;
		}
		out("OK publish %s", status);
	} else if (strcmp(cmd, "friend") == 0 || strcmp(cmd, "phone") == 0) {
		char *label = strtok_r(NULL, " \t", &save);
		char *uri = strtok_r(NULL, " \t", &save);
		if (!label || !uri || add_friend(label, uri, cmd[0] == 'p') != 0) {
			out("ERROR %s: cannot add", cmd);
			return;
		}
		/* A list with an RLS URI is not re-subscribed by itself when it changes. */
		if (rls) linphone_friend_list_update_subscriptions(flist);
		out("OK %s %s", cmd, label);
	} else if (strcmp(cmd, "unfriend") == 0) {
		char *label = strtok_r(NULL, " \t", &save);
		if (!label || remove_friend(label) != 0) {
			out("ERROR unfriend: unknown friend");
			return;
		}
		if (rls) linphone_friend_list_update_subscriptions(flist);
		out("OK unfriend %s", label);
	} else if (strcmp(cmd, "show") == 0) {
		char *label = strtok_r(NULL, " \t", &save);
		int i = label ? find_friend(label) : -1;
		if (i < 0) {
			out("ERROR show: unknown friend");
			return;
		}
		print_friend(friends[i].f);
	} else if (strcmp(cmd, "quit") == 0) {
		quit_requested = 1;
	} else {
		out("ERROR unknown command %s", cmd);
	}
}

/* Reads whatever stdin has, runs complete lines. */
static void read_stdin(void) {
	static char buf[4096];
	static size_t len;
	struct pollfd p = {.fd = 0, .events = POLLIN};
	while (poll(&p, 1, 0) > 0) {
		if (!(p.revents & (POLLIN | POLLHUP))) break;
		ssize_t r = read(0, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0) {
			quit_requested = 1; /* EOF: the test is gone */
			return;
		}
		len += (size_t)r;
		char *nl;
		while ((nl = memchr(buf, '\n', len)) != NULL) {
			*nl = '\0';
			if (nl > buf && nl[-1] == '\r') nl[-1] = '\0';
			command(buf);
			size_t used = (size_t)(nl - buf) + 1;
			memmove(buf, nl + 1, len - used);
			len -= used;
		}
		if (len == sizeof(buf) - 1) len = 0; /* an absurd line: drop it */
	}
}

static void on_signal(int sig) {
	(void)sig;
	quit_requested = 1;
}

static void usage(void) {
	fprintf(stderr, "usage: lpdriver --user NAME --proxy URI [--domain D] [--rls URI] [--friend LABEL=URI]... "
	                "[--phone LABEL=NUMBER]... [--no-publish] [--dir DIR] [--debug]\n");
	exit(2);
}

int main(int argc, char **argv) {
	const char *user = NULL, *proxy = NULL, *dir = NULL;
	const char *initial[MAX_FRIENDS];
	int ninitial = 0;
	int do_publish = 1, debug = 0, deflate = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--user") == 0 && i + 1 < argc) user = argv[++i];
		else if (strcmp(a, "--domain") == 0 && i + 1 < argc) domain = argv[++i];
		else if (strcmp(a, "--proxy") == 0 && i + 1 < argc) proxy = argv[++i];
		else if (strcmp(a, "--rls") == 0 && i + 1 < argc) rls = argv[++i];
		else if (strcmp(a, "--dir") == 0 && i + 1 < argc) dir = argv[++i];
		else if ((strcmp(a, "--friend") == 0 || strcmp(a, "--phone") == 0) && i + 1 < argc && ninitial + 2 <= MAX_FRIENDS)
			initial[ninitial++] = argv[i++], initial[ninitial++] = argv[i];
		else if (strcmp(a, "--no-publish") == 0) do_publish = 0;
		else if (strcmp(a, "--no-deflate") == 0) deflate = 0;
		else if (strcmp(a, "--debug") == 0) debug = 1;
		else usage();
	}
	if (!user || !proxy) usage();
	int events_fd = dup(1);
	events = events_fd >= 0 ? fdopen(events_fd, "w") : NULL;
	if (!events || dup2(2, 1) < 0) {
		perror("lpdriver: stdout");
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);

	char tmpl[] = "/tmp/lpdriver-XXXXXX";
	if (!dir) {
		dir = mkdtemp(tmpl);
		if (!dir) {
			perror("mkdtemp");
			return 1;
		}
	} else {
		mkdir(dir, 0700);
	}

	linphone_core_set_log_level(debug ? ORTP_MESSAGE : ORTP_WARNING);
	LinphoneFactory *factory = linphone_factory_get();
	linphone_factory_set_config_dir(factory, dir);
	linphone_factory_set_data_dir(factory, dir);
	linphone_factory_set_download_dir(factory, dir);

	char path[1024];
	snprintf(path, sizeof(path), "%s/linphonerc", dir);
	FILE *rc = fopen(path, "w");
	if (!rc) {
		perror(path);
		return 1;
	}
	/* No sound card, no video, no database files outside DIR; presence refreshes every 10 min. */
	fprintf(rc,
	        "[sound]\nplayback_dev_id=\ncapture_dev_id=\nringer_dev_id=\n"
	        "[video]\nautomatically_initiate=0\nautomatically_accept=0\ncapture=0\ndisplay=0\n"
	        "[misc]\nuuid=\nenable_basic_to_client_group_chat_room_migration=0\n"
	        "[storage]\nuri=%s/linphone.db\n"
	        "[sip]\nsip_tcp_port=-1\nsip_port=0\nsip_tls_port=0\n%s",
	        dir, deflate ? "" : "handle_content_encoding=none\n");
	fclose(rc);

	lc = linphone_factory_create_core_3(factory, path, NULL, NULL);
	LinphoneCoreCbs *cbs = linphone_factory_create_core_cbs(factory);
	linphone_core_cbs_set_notify_presence_received(cbs, on_presence);
	linphone_core_cbs_set_notify_presence_received_for_uri_or_tel(cbs, on_presence_for_uri);
	linphone_core_cbs_set_account_registration_state_changed(cbs, on_registration);
	linphone_core_cbs_set_publish_state_changed(cbs, on_publish);
	linphone_core_add_callbacks(lc, cbs);
	linphone_core_cbs_unref(cbs);

	linphone_core_set_use_files(lc, TRUE);
	linphone_core_enable_video_capture(lc, FALSE);
	linphone_core_enable_video_display(lc, FALSE);
	linphone_core_set_user_agent(lc, "lpdriver", linphone_core_get_version());
	LinphoneTransports *tr = linphone_factory_create_transports(factory);
	linphone_transports_set_udp_port(tr, 0);
	linphone_transports_set_tcp_port(tr, LC_SIP_TRANSPORT_RANDOM);
	linphone_transports_set_tls_port(tr, 0);
	linphone_transports_set_dtls_port(tr, 0);
	linphone_core_set_transports(lc, tr);
	linphone_transports_unref(tr);

	if (linphone_core_start(lc) != 0) {
		out("ERROR linphone_core_start failed");
		return 1;
	}

	/* The account: identity sip:USER@DOMAIN, registered at the proxy, every request through the
	 * proxy (the proxy is also the account's route: an outbound proxy). */
	char identity[512];
	snprintf(identity, sizeof(identity), "sip:%s@%s", user, domain);
	linphone_core_set_primary_contact(lc, identity);
	LinphoneAccountParams *params = linphone_core_create_account_params(lc);
	LinphoneAddress *id = linphone_factory_create_address(factory, identity);
	linphone_account_params_set_identity_address(params, id);
	linphone_address_unref(id);
	linphone_account_params_set_server_addr(params, proxy);
	LinphoneAddress *route = linphone_factory_create_address(factory, proxy);
	if (!route) {
		out("ERROR bad --proxy %s", proxy);
		return 1;
	}
	bctbx_list_t *routes = bctbx_list_append(NULL, route);
	linphone_account_params_set_routes_addresses(params, routes);
	bctbx_list_free(routes);
	linphone_address_unref(route);
	linphone_account_params_set_register_enabled(params, TRUE);
	linphone_account_params_set_publish_enabled(params, do_publish ? TRUE : FALSE);
	linphone_account_params_set_expires(params, 600);
	linphone_account_params_set_publish_expires(params, 600);
	LinphoneAccount *account = linphone_core_create_account(lc, params);
	linphone_account_params_unref(params);
	linphone_core_add_account(lc, account);
	linphone_core_set_default_account(lc, account);
	linphone_account_unref(account);

	/* The friend list: with an RLS URI one list SUBSCRIBE carries every friend, else each friend
	 * gets its own SUBSCRIBE. */
	if (rls) {
		flist = linphone_core_create_friend_list(lc);
		linphone_friend_list_set_display_name(flist, "friends");
		linphone_friend_list_set_rls_uri(flist, rls);
		linphone_core_add_friend_list(lc, flist);
	} else {
		flist = linphone_friend_list_ref(linphone_core_get_default_friend_list(lc));
	}
	linphone_friend_list_enable_subscriptions(flist, TRUE);
	/* The contacts the user already has: in the list before the account registers, so that an
	 * RLS list goes out as one SUBSCRIBE once registered. */
	for (int i = 0; i + 1 < ninitial; i += 2) {
		char spec[512];
		snprintf(spec, sizeof(spec), "%s", initial[i + 1]);
		char *eq = strchr(spec, '=');
		if (eq) *eq = '\0';
		if (!eq || add_friend(spec, eq + 1, strcmp(initial[i], "--phone") == 0) != 0) {
			out("ERROR %s %s: cannot add", initial[i], initial[i + 1]);
			return 1;
		}
	}

	out("READY");
	while (!quit_requested) {
		linphone_core_iterate(lc);
		read_stdin();
		usleep(10000);
	}

	/* Unsubscribe, unPUBLISH and unREGISTER, for at most 2 s. */
	for (int i = 0; i < nfriends; i++) linphone_friend_unref(friends[i].f);
	nfriends = 0;
	linphone_friend_list_unref(flist);
	linphone_core_stop_async(lc);
	for (int i = 0; i < 200 && linphone_core_get_global_state(lc) != LinphoneGlobalOff; i++) {
		linphone_core_iterate(lc);
		usleep(10000);
	}
	linphone_core_unref(lc);
	out("BYE");
	return 0;
}
