<?php
/**
 * The plugin's settings: options, the "Returns Connector" page under WooCommerce, and the REST
 * route through which the connector hands over the plugin secret after the store connects.
 *
 * Options (all autoload no; uninstall.php deletes exactly these):
 *   rc_connector_url  https base URL of the connector (default https://returns.example.com)
 *   rc_shop           the shop handle at the connector
 *   rc_plugin_secret  the shared secret for customer tokens and signed requests
 *   rc_portal_url     the store's public portal URL (for visitors who are not signed in)
 *   rc_footer_link    'yes' to print a Returns link in the footer
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Settings page, options and the secret hand-over route.
 */
final class RC_Settings {

	const PAGE            = 'returns-connector';
	const DEFAULT_URL     = 'https://returns.example.com';
	const REST_NAMESPACE  = 'returns-connector/v1';
	const HANDLE_PATTERN  = '/^[A-Za-z0-9_-]{1,64}$/';
	const SECRET_PATTERN  = '/^[\x21-\x7e]{16,256}$/';
	const OPTIONS         = array( 'rc_connector_url', 'rc_shop', 'rc_plugin_secret', 'rc_portal_url', 'rc_footer_link' );

	/**
	 * Hooks.
	 */
	public static function init() {
		add_action( 'admin_menu', array( __CLASS__, 'add_page' ), 60 );
		add_action( 'admin_post_rc_save_settings', array( __CLASS__, 'save' ) );
		add_action( 'rest_api_init', array( __CLASS__, 'register_routes' ) );
		add_filter( 'woocommerce_rest_is_request_to_rest_api', array( __CLASS__, 'use_woocommerce_key_auth' ) );
		add_filter( 'allowed_redirect_hosts', array( __CLASS__, 'allow_connector_host' ) );
		add_filter( 'plugin_action_links_' . plugin_basename( RC_PLUGIN_FILE ), array( __CLASS__, 'action_links' ) );
	}

	/**
	 * Activation: options exist with autoload off, the My Account endpoint has its rewrite rules.
	 */
	public static function activate() {
		add_option( 'rc_connector_url', self::DEFAULT_URL, '', 'no' );
		foreach ( array( 'rc_shop', 'rc_plugin_secret', 'rc_portal_url' ) as $name ) {
			add_option( $name, '', '', 'no' );
		}
		add_option( 'rc_footer_link', 'no', '', 'no' );
		RC_Account::add_endpoint();
		flush_rewrite_rules();
	}

	/**
	 * Deactivation: drop the endpoint's rewrite rules (options stay until uninstall).
	 */
	public static function deactivate() {
		flush_rewrite_rules();
	}

	/**
	 * Notice when WooCommerce is not active.
	 */
	public static function woocommerce_missing_notice() {
		echo '<div class="notice notice-error"><p>' . esc_html__( 'Returns Connector needs WooCommerce to be installed and active.', 'returns-connector' ) . '</p></div>';
	}

	// ---------------------------------------------------------------- options

	/**
	 * The connector's base URL, without trailing slash.
	 *
	 * @return string
	 */
	public static function connector_url() {
		$url = (string) get_option( 'rc_connector_url', self::DEFAULT_URL );
		return untrailingslashit( '' === $url ? self::DEFAULT_URL : $url );
	}

	/**
	 * Shop handle.
	 *
	 * @return string
	 */
	public static function shop() {
		return (string) get_option( 'rc_shop', '' );
	}

	/**
	 * Plugin secret ('' when not connected).
	 *
	 * @return string
	 */
	public static function secret() {
		return (string) get_option( 'rc_plugin_secret', '' );
	}

	/**
	 * The store's portal URL ('' when unknown).
	 *
	 * @return string
	 */
	public static function portal_url() {
		return (string) get_option( 'rc_portal_url', '' );
	}

	/**
	 * Whether the footer link is on.
	 *
	 * @return bool
	 */
	public static function footer_link() {
		return 'yes' === get_option( 'rc_footer_link', 'no' );
	}

	/**
	 * Whether the plugin can sign (has a shop handle and a secret).
	 *
	 * @return bool
	 */
	public static function is_configured() {
		return '' !== self::shop() && '' !== self::secret();
	}

	/**
	 * The settings page URL.
	 *
	 * @return string
	 */
	public static function page_url() {
		return admin_url( 'admin.php?page=' . self::PAGE );
	}

	/**
	 * A URL when it is absolute https with a host and no credentials, else ''. Query and fragment
	 * are dropped and the trailing slash removed.
	 *
	 * @param string $url Candidate.
	 * @return string
	 */
	public static function clean_https_url( $url ) {
		$url   = esc_url_raw( trim( (string) $url ), array( 'https' ) );
		$parts = wp_parse_url( $url );
		if ( ! $url || ! is_array( $parts ) || empty( $parts['host'] ) || 'https' !== strtolower( (string) ( $parts['scheme'] ?? '' ) )
			|| isset( $parts['user'] ) || isset( $parts['pass'] ) ) {
			return '';
		}
		$port = isset( $parts['port'] ) ? ':' . (int) $parts['port'] : '';
		$path = isset( $parts['path'] ) ? untrailingslashit( $parts['path'] ) : '';
		return 'https://' . strtolower( $parts['host'] ) . $port . $path;
	}

	/**
	 * Lets wp_safe_redirect() send shoppers to the connector's host.
	 *
	 * @param string[] $hosts Allowed hosts.
	 * @return string[]
	 */
	public static function allow_connector_host( $hosts ) {
		$host = wp_parse_url( self::connector_url(), PHP_URL_HOST );
		if ( $host ) {
			$hosts[] = $host;
		}
		$portal = wp_parse_url( self::portal_url(), PHP_URL_HOST );
		if ( $portal ) {
			$hosts[] = $portal;
		}
		return $hosts;
	}

	// ---------------------------------------------------------------- page

	/**
	 * The submenu under WooCommerce.
	 */
	public static function add_page() {
		add_submenu_page(
			'woocommerce',
			__( 'Returns Connector', 'returns-connector' ),
			__( 'Returns Connector', 'returns-connector' ),
			'manage_woocommerce',
			self::PAGE,
			array( __CLASS__, 'render' )
		);
	}

	/**
	 * A "Settings" link on the Plugins screen.
	 *
	 * @param string[] $links Links.
	 * @return string[]
	 */
	public static function action_links( $links ) {
		array_unshift( $links, '<a href="' . esc_url( self::page_url() ) . '">' . esc_html__( 'Settings', 'returns-connector' ) . '</a>' );
		return $links;
	}

	/**
	 * Where the Connect button sends the merchant: the connector starts WooCommerce's wc-auth
	 * key approval for this store and comes back to this page.
	 *
	 * @return string
	 */
	public static function connect_url() {
		return add_query_arg(
			array(
				'store_url'  => rawurlencode( home_url( '/' ) ),
				'return_url' => rawurlencode( self::page_url() ),
			),
			self::connector_url() . '/woocommerce/connect'
		);
	}

	/**
	 * The messages the save handler can leave for the page.
	 *
	 * @return array<string,array{0:string,1:string}> code => [type, text]
	 */
	private static function notices() {
		return array(
			'saved'          => array( 'success', __( 'Settings saved.', 'returns-connector' ) ),
			'bad_url'        => array( 'error', __( 'The connector URL must be an https:// address.', 'returns-connector' ) ),
			'bad_portal'     => array( 'error', __( 'The portal URL must be an https:// address.', 'returns-connector' ) ),
			'bad_shop'       => array( 'error', __( 'The shop handle may only contain letters, digits, "-" and "_" (at most 64).', 'returns-connector' ) ),
			'bad_secret'     => array( 'error', __( 'The plugin secret must be 16 to 256 printable characters without spaces.', 'returns-connector' ) ),
			'secret_removed' => array( 'success', __( 'Settings saved. The plugin secret was removed: the Returns links are off until the store connects again.', 'returns-connector' ) ),
		);
	}

	/**
	 * The settings page.
	 */
	public static function render() {
		if ( ! current_user_can( 'manage_woocommerce' ) ) {
			wp_die( esc_html__( 'You do not have permission to manage Returns Connector.', 'returns-connector' ) );
		}
		// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- display only.
		$code    = isset( $_GET['rc_notice'] ) ? sanitize_key( wp_unslash( $_GET['rc_notice'] ) ) : '';
		$notices = self::notices();
		?>
		<div class="wrap">
			<h1><?php esc_html_e( 'Returns Connector', 'returns-connector' ); ?></h1>
			<?php if ( isset( $notices[ $code ] ) ) : ?>
				<div class="notice notice-<?php echo esc_attr( $notices[ $code ][0] ); ?> is-dismissible"><p><?php echo esc_html( $notices[ $code ][1] ); ?></p></div>
			<?php endif; ?>

			<h2><?php esc_html_e( 'Connection', 'returns-connector' ); ?></h2>
			<?php self::render_status(); ?>
			<p>
				<a class="button button-primary" href="<?php echo esc_url( self::connect_url() ); ?>"><?php echo esc_html( self::is_configured() ? __( 'Connect again', 'returns-connector' ) : __( 'Connect this store', 'returns-connector' ) ); ?></a>
			</p>
			<p class="description"><?php esc_html_e( 'Connecting opens the Returns Connector, which asks WooCommerce for API keys (you approve them on the next screen) and then sends this plugin its secret.', 'returns-connector' ); ?></p>

			<form method="post" action="<?php echo esc_url( admin_url( 'admin-post.php' ) ); ?>">
				<input type="hidden" name="action" value="rc_save_settings">
				<?php wp_nonce_field( 'rc_save_settings' ); ?>
				<h2><?php esc_html_e( 'Settings', 'returns-connector' ); ?></h2>
				<table class="form-table" role="presentation">
					<tr>
						<th scope="row"><label for="rc_connector_url"><?php esc_html_e( 'Connector URL', 'returns-connector' ); ?></label></th>
						<td><input type="url" class="regular-text code" id="rc_connector_url" name="rc_connector_url" required pattern="https://.+" value="<?php echo esc_attr( self::connector_url() ); ?>">
							<p class="description"><?php esc_html_e( 'The address of your Returns Connector (https only).', 'returns-connector' ); ?></p></td>
					</tr>
					<tr>
						<th scope="row"><label for="rc_portal_url"><?php esc_html_e( 'Portal URL', 'returns-connector' ); ?></label></th>
						<td><input type="url" class="regular-text code" id="rc_portal_url" name="rc_portal_url" pattern="https://.+" value="<?php echo esc_attr( self::portal_url() ); ?>">
							<?php if ( self::portal_url() ) : ?>
								<a href="<?php echo esc_url( self::portal_url() ); ?>" target="_blank" rel="noopener"><?php esc_html_e( 'Open', 'returns-connector' ); ?></a>
							<?php endif; ?>
							<p class="description"><?php esc_html_e( 'Where visitors who are not signed in start a return. Set by the connector when the store connects.', 'returns-connector' ); ?></p></td>
					</tr>
					<tr>
						<th scope="row"><label for="rc_shop"><?php esc_html_e( 'Shop handle', 'returns-connector' ); ?></label></th>
						<td><input type="text" class="regular-text code" id="rc_shop" name="rc_shop" pattern="[A-Za-z0-9_\-]{1,64}" value="<?php echo esc_attr( self::shop() ); ?>" autocomplete="off"></td>
					</tr>
					<tr>
						<th scope="row"><label for="rc_plugin_secret"><?php esc_html_e( 'Plugin secret', 'returns-connector' ); ?></label></th>
						<td><input type="password" class="regular-text code" id="rc_plugin_secret" name="rc_plugin_secret" value="" autocomplete="new-password"
							placeholder="<?php echo esc_attr( self::secret() ? __( 'Stored (leave empty to keep it)', 'returns-connector' ) : __( 'Not set', 'returns-connector' ) ); ?>">
							<p class="description"><?php esc_html_e( 'Sent by the connector when the store connects. Paste it here only if the connector shows it to you (stores connected from the command line).', 'returns-connector' ); ?></p>
							<?php if ( self::secret() ) : ?>
								<label><input type="checkbox" name="rc_remove_secret" value="1"> <?php esc_html_e( 'Remove the stored secret', 'returns-connector' ); ?></label>
							<?php endif; ?></td>
					</tr>
					<tr>
						<th scope="row"><?php esc_html_e( 'Footer link', 'returns-connector' ); ?></th>
						<td><label><input type="checkbox" name="rc_footer_link" value="yes" <?php checked( self::footer_link() ); ?>> <?php esc_html_e( 'Show a "Returns" link in the footer of every page', 'returns-connector' ); ?></label>
							<p class="description"><?php esc_html_e( 'Anywhere else, use the shortcode [returns_portal].', 'returns-connector' ); ?></p></td>
					</tr>
				</table>
				<?php submit_button( __( 'Save settings', 'returns-connector' ) ); ?>
			</form>
		</div>
		<?php
	}

	/**
	 * The connection status, asked from the connector with a signed GET /woocommerce/plugin/status.
	 */
	private static function render_status() {
		if ( ! self::is_configured() ) {
			echo '<p><strong>' . esc_html__( 'Not connected.', 'returns-connector' ) . '</strong> ' . esc_html__( 'Connect the store to turn on the Returns links.', 'returns-connector' ) . '</p>';
			return;
		}
		$status = RC_Connector_Client::from_settings()->status();
		if ( is_wp_error( $status ) ) {
			echo '<p><strong>' . esc_html__( 'The connector could not confirm the connection:', 'returns-connector' ) . '</strong> ' . esc_html( $status->get_error_message() ) . '</p>';
			return;
		}
		$connected = ! empty( $status['connected'] );
		echo '<table class="widefat striped" style="max-width:50em"><tbody>';
		self::status_row( __( 'Status', 'returns-connector' ), $connected ? __( 'Connected', 'returns-connector' ) : __( 'Not connected', 'returns-connector' ) );
		self::status_row( __( 'Shop', 'returns-connector' ), isset( $status['shop'] ) ? (string) $status['shop'] : self::shop() );
		$rows = array(
			'store_url' => __( 'Store', 'returns-connector' ),
			'webhooks'  => __( 'Order updates (webhooks)', 'returns-connector' ),
			'last_sync' => __( 'Last order sync', 'returns-connector' ),
			'message'   => __( 'Message', 'returns-connector' ),
		);
		foreach ( $rows as $key => $label ) {
			if ( ! empty( $status[ $key ] ) ) {
				self::status_row( $label, self::plain( $status[ $key ] ) );
			}
		}
		echo '</tbody></table>';
		if ( ! empty( $status['portal_url'] ) ) {
			$portal = self::clean_https_url( (string) $status['portal_url'] );
			if ( $portal && $portal !== self::portal_url() ) {
				update_option( 'rc_portal_url', $portal, false );
			}
		}
	}

	/**
	 * A status value as text: scalars as they are, lists and objects as "key: value" pairs (the
	 * connector passes some values through as it stores them).
	 *
	 * @param mixed $value Value from the JSON answer.
	 * @return string
	 */
	private static function plain( $value ) {
		if ( is_bool( $value ) ) {
			return $value ? __( 'yes', 'returns-connector' ) : __( 'no', 'returns-connector' );
		}
		if ( ! is_array( $value ) ) {
			return (string) $value;
		}
		$parts = array();
		foreach ( $value as $key => $item ) {
			$text    = self::plain( $item );
			$parts[] = is_int( $key ) ? $text : $key . ': ' . $text;
		}
		return implode( ', ', $parts );
	}

	/**
	 * One escaped row of the status table.
	 *
	 * @param string $label Label.
	 * @param string $value Value.
	 */
	private static function status_row( $label, $value ) {
		echo '<tr><th scope="row">' . esc_html( $label ) . '</th><td>' . esc_html( $value ) . '</td></tr>';
	}

	/**
	 * Saves the settings form (admin-post action rc_save_settings).
	 */
	public static function save() {
		if ( ! current_user_can( 'manage_woocommerce' ) ) {
			wp_die( esc_html__( 'You do not have permission to manage Returns Connector.', 'returns-connector' ), 403 );
		}
		check_admin_referer( 'rc_save_settings' );

		$url    = self::clean_https_url( isset( $_POST['rc_connector_url'] ) ? sanitize_text_field( wp_unslash( $_POST['rc_connector_url'] ) ) : '' );
		$portal = isset( $_POST['rc_portal_url'] ) ? sanitize_text_field( wp_unslash( $_POST['rc_portal_url'] ) ) : '';
		$shop   = isset( $_POST['rc_shop'] ) ? sanitize_text_field( wp_unslash( $_POST['rc_shop'] ) ) : '';
		// A secret is used byte for byte: not run through sanitize_text_field, but checked strictly.
		$secret = isset( $_POST['rc_plugin_secret'] ) ? trim( (string) wp_unslash( $_POST['rc_plugin_secret'] ) ) : ''; // phpcs:ignore WordPress.Security.ValidatedSanitizedInput.InputNotSanitized
		$code   = 'saved';

		if ( '' === $url ) {
			$code = 'bad_url';
		} elseif ( '' !== $portal && '' === self::clean_https_url( $portal ) ) {
			$code = 'bad_portal';
		} elseif ( '' !== $shop && ! preg_match( self::HANDLE_PATTERN, $shop ) ) {
			$code = 'bad_shop';
		} elseif ( '' !== $secret && ! preg_match( self::SECRET_PATTERN, $secret ) ) {
			$code = 'bad_secret';
		}
		if ( 'saved' === $code ) {
			update_option( 'rc_connector_url', $url, false );
			update_option( 'rc_portal_url', '' === $portal ? '' : self::clean_https_url( $portal ), false );
			update_option( 'rc_shop', $shop, false );
			update_option( 'rc_footer_link', isset( $_POST['rc_footer_link'] ) ? 'yes' : 'no', false );
			if ( ! empty( $_POST['rc_remove_secret'] ) ) {
				update_option( 'rc_plugin_secret', '', false );
				$code = 'secret_removed';
			} elseif ( '' !== $secret ) {
				update_option( 'rc_plugin_secret', $secret, false );
			}
		}
		wp_safe_redirect( add_query_arg( 'rc_notice', $code, self::page_url() ) );
		exit;
	}

	// ---------------------------------------------------------------- REST: the secret hand-over

	/**
	 * WooCommerce authenticates REST requests with its API keys only for its own namespaces; this
	 * filter makes it do the same for ours, so the connector can call us with the keys it got.
	 *
	 * @param bool $is_api Whether WooCommerce treats the request as its API.
	 * @return bool
	 */
	public static function use_woocommerce_key_auth( $is_api ) {
		if ( $is_api ) {
			return $is_api;
		}
		// phpcs:disable WordPress.Security.NonceVerification.Recommended -- routing only, no action taken here.
		$uri   = isset( $_SERVER['REQUEST_URI'] ) ? esc_url_raw( wp_unslash( $_SERVER['REQUEST_URI'] ) ) : '';
		$route = isset( $_GET['rest_route'] ) ? sanitize_text_field( wp_unslash( $_GET['rest_route'] ) ) : '';
		// phpcs:enable
		$prefix = trailingslashit( rest_get_url_prefix() ) . self::REST_NAMESPACE . '/';
		return false !== strpos( $uri, $prefix ) || 0 === strpos( $route, '/' . self::REST_NAMESPACE . '/' );
	}

	/**
	 * POST /wp-json/returns-connector/v1/secret {shop, plugin_secret, portal_url}.
	 */
	public static function register_routes() {
		register_rest_route(
			self::REST_NAMESPACE,
			'/secret',
			array(
				'methods'             => 'POST',
				'callback'            => array( __CLASS__, 'receive_secret' ),
				'permission_callback' => static function () {
					return current_user_can( 'manage_woocommerce' );
				},
				'args'                => array(
					'shop'          => array(
						'type'     => 'string',
						'required' => true,
						'pattern'  => '^[A-Za-z0-9_-]{1,64}$',
					),
					'plugin_secret' => array(
						'type'     => 'string',
						'required' => true,
						'pattern'  => '^[\x21-\x7e]{16,256}$',
					),
					'portal_url'    => array(
						'type'              => 'string',
						'required'          => true,
						'validate_callback' => static function ( $value ) {
							return is_string( $value ) && '' !== RC_Settings::clean_https_url( $value );
						},
					),
				),
			)
		);
	}

	/**
	 * Stores what the connector sent. Answers 200 {"ok": true, "shop": ..., "portal_url": ...}
	 * (the secret is never echoed).
	 *
	 * @param WP_REST_Request $request Request.
	 * @return WP_REST_Response
	 */
	public static function receive_secret( $request ) {
		$shop   = (string) $request->get_param( 'shop' );
		$portal = self::clean_https_url( (string) $request->get_param( 'portal_url' ) );
		update_option( 'rc_shop', $shop, false );
		update_option( 'rc_plugin_secret', (string) $request->get_param( 'plugin_secret' ), false );
		update_option( 'rc_portal_url', $portal, false );
		return new WP_REST_Response(
			array(
				'ok'         => true,
				'shop'       => $shop,
				'portal_url' => $portal,
			),
			200
		);
	}
}
