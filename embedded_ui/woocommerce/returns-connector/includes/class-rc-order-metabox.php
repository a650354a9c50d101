<?php
/**
 * The "Returns" meta box on the order screen (HPOS and posts) with a one-click Refund per return.
 *
 * The box lists the order's returns from the connector (signed GET
 * /woocommerce/plugin/orders/<id>/returns). Refund posts to admin-ajax.php (action rc_refund, a
 * WordPress nonce per order, capability edit_shop_orders), which calls the connector's signed
 * POST /woocommerce/plugin/refund {"return_id": N} and shows its answer: the amount refunded, or
 * the connector's reason verbatim. The connector makes the refund exactly once, however often
 * the button is clicked.
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Order meta box and its refund action.
 */
final class RC_Order_Metabox {

	const AJAX_ACTION = 'rc_refund';

	/**
	 * Hooks.
	 */
	public static function init() {
		add_action( 'add_meta_boxes', array( __CLASS__, 'add' ) );
		add_action( 'admin_enqueue_scripts', array( __CLASS__, 'enqueue' ) );
		add_action( 'wp_ajax_' . self::AJAX_ACTION, array( __CLASS__, 'ajax_refund' ) );
	}

	/**
	 * The order edit screen's id: wc-orders page with HPOS, shop_order with posts.
	 *
	 * @return string
	 */
	public static function screen_id() {
		return function_exists( 'wc_get_page_screen_id' ) ? wc_get_page_screen_id( 'shop-order' ) : 'shop_order';
	}

	/**
	 * Registers the box.
	 */
	public static function add() {
		if ( ! RC_Settings::is_configured() || ! current_user_can( 'edit_shop_orders' ) ) {
			return;
		}
		add_meta_box( 'rc-returns', __( 'Returns', 'returns-connector' ), array( __CLASS__, 'render' ), self::screen_id(), 'normal', 'default' );
	}

	/**
	 * The refund script, on the order screen only.
	 *
	 * @param string $hook_suffix Admin page hook.
	 */
	public static function enqueue( $hook_suffix ) {
		$screen = function_exists( 'get_current_screen' ) ? get_current_screen() : null;
		if ( ! $screen || self::screen_id() !== $screen->id || ! RC_Settings::is_configured() ) {
			return;
		}
		wp_enqueue_script( 'rc-order-metabox', plugins_url( 'assets/js/order-metabox.js', RC_PLUGIN_FILE ), array(), RC_VERSION, true );
		wp_localize_script(
			'rc-order-metabox',
			'rcOrderMetabox',
			array(
				'ajaxUrl' => admin_url( 'admin-ajax.php' ),
				'action'  => self::AJAX_ACTION,
				'failed'  => __( 'The refund request failed. Reload the page to see the return\'s state.', 'returns-connector' ),
				'working' => __( 'Refunding…', 'returns-connector' ),
			)
		);
	}

	/**
	 * The order behind the meta box callback's argument (WP_Post with posts, WC_Order with HPOS).
	 *
	 * @param WP_Post|WC_Order $object Screen object.
	 * @return WC_Order|null
	 */
	private static function order_of( $object ) {
		$order = $object instanceof WP_Post ? wc_get_order( $object->ID ) : $object;
		return $order instanceof WC_Order ? $order : null;
	}

	/**
	 * A money amount (decimal string) as plain text in the given currency.
	 *
	 * @param string $amount   Amount.
	 * @param string $currency ISO currency.
	 * @return string
	 */
	private static function money_text( $amount, $currency ) {
		return html_entity_decode( wp_strip_all_tags( wc_price( (float) $amount, array( 'currency' => $currency ) ) ), ENT_QUOTES, 'UTF-8' );
	}

	/**
	 * The merchant's word for a refund state.
	 *
	 * @param string $state pending|succeeded|failed|unknown.
	 * @return string
	 */
	private static function refund_state_label( $state ) {
		$labels = array(
			'pending'   => __( 'Pending', 'returns-connector' ),
			'succeeded' => __( 'Refunded', 'returns-connector' ),
			'failed'    => __( 'Failed', 'returns-connector' ),
			'unknown'   => __( 'Being checked with WooCommerce', 'returns-connector' ),
		);
		return isset( $labels[ $state ] ) ? $labels[ $state ] : $state;
	}

	/**
	 * The box.
	 *
	 * @param WP_Post|WC_Order $object Screen object.
	 */
	public static function render( $object ) {
		$order = self::order_of( $object );
		if ( ! $order || ! $order->get_id() || $order->has_status( array( 'auto-draft', 'checkout-draft' ) ) ) {
			echo '<p>' . esc_html__( 'Returns appear here once the order is saved.', 'returns-connector' ) . '</p>';
			return;
		}
		$returns = RC_Connector_Client::from_settings()->order_returns( $order->get_id() );
		if ( is_wp_error( $returns ) ) {
			echo '<p>' . esc_html__( 'The returns of this order could not be loaded:', 'returns-connector' ) . ' ' . esc_html( $returns->get_error_message() ) . '</p>';
			return;
		}
		if ( ! $returns ) {
			echo '<p>' . esc_html__( 'No returns for this order.', 'returns-connector' ) . '</p>';
			return;
		}
		$currency = $order->get_currency();
		$nonce    = wp_create_nonce( self::AJAX_ACTION . '_' . $order->get_id() );
		?>
		<table class="widefat striped rc-returns" data-order="<?php echo esc_attr( (string) $order->get_id() ); ?>" data-nonce="<?php echo esc_attr( $nonce ); ?>">
			<thead><tr>
				<th scope="col"><?php esc_html_e( 'Return', 'returns-connector' ); ?></th>
				<th scope="col"><?php esc_html_e( 'State', 'returns-connector' ); ?></th>
				<th scope="col"><?php esc_html_e( 'Refund', 'returns-connector' ); ?></th>
				<th scope="col"><span class="screen-reader-text"><?php esc_html_e( 'Actions', 'returns-connector' ); ?></span></th>
			</tr></thead>
			<tbody>
			<?php foreach ( $returns as $return ) : ?>
				<?php
				if ( ! is_array( $return ) || ! isset( $return['id'] ) ) {
					continue;
				}
				$refund  = isset( $return['refund'] ) && is_array( $return['refund'] ) ? $return['refund'] : null;
				$preview = isset( $return['refund_preview'] ) && is_array( $return['refund_preview'] ) ? $return['refund_preview'] : null;
				?>
				<tr data-return="<?php echo esc_attr( (string) absint( $return['id'] ) ); ?>">
					<td><strong><?php echo esc_html( isset( $return['rma'] ) ? (string) $return['rma'] : '#' . absint( $return['id'] ) ); ?></strong></td>
					<td><?php echo esc_html( isset( $return['state_label'] ) ? (string) $return['state_label'] : ( isset( $return['state'] ) ? (string) $return['state'] : '' ) ); ?></td>
					<td>
						<?php if ( $refund ) : ?>
							<?php
							echo esc_html(
								sprintf(
									/* translators: 1: amount with currency, 2: refund state (Refunded, Pending, ...) */
									__( '%1$s (%2$s)', 'returns-connector' ),
									self::money_text( isset( $refund['amount'] ) ? (string) $refund['amount'] : '0', isset( $refund['currency'] ) ? (string) $refund['currency'] : $currency ),
									self::refund_state_label( isset( $refund['state'] ) ? (string) $refund['state'] : '' )
								)
							);
							if ( ! empty( $refund['error'] ) ) {
								echo '<br><span class="rc-refund-error">' . esc_html( (string) $refund['error'] ) . '</span>';
							}
							?>
						<?php elseif ( $preview && isset( $preview['total'] ) ) : ?>
							<?php
							echo esc_html(
								sprintf(
									/* translators: %s: amount with currency */
									__( 'To refund: %s', 'returns-connector' ),
									self::money_text( (string) $preview['total'], isset( $preview['currency'] ) ? (string) $preview['currency'] : $currency )
								)
							);
							?>
							<?php if ( ! empty( $preview['lines'] ) && is_array( $preview['lines'] ) ) : ?>
								<ul class="rc-refund-lines">
								<?php foreach ( $preview['lines'] as $line ) : ?>
									<?php
									if ( ! is_array( $line ) ) {
										continue;
									}
									?>
									<li><?php echo esc_html( sprintf( '%s × %d: %s', isset( $line['title'] ) ? (string) $line['title'] : '', isset( $line['quantity'] ) ? (int) $line['quantity'] : 0, self::money_text( isset( $line['amount'] ) ? (string) $line['amount'] : '0', isset( $preview['currency'] ) ? (string) $preview['currency'] : $currency ) ) ); ?></li>
								<?php endforeach; ?>
								</ul>
							<?php endif; ?>
						<?php else : ?>
							&mdash;
						<?php endif; ?>
					</td>
					<td>
						<?php if ( ! empty( $return['can_refund'] ) ) : ?>
							<button type="button" class="button button-primary rc-refund" data-return="<?php echo esc_attr( (string) absint( $return['id'] ) ); ?>"
								data-confirm="<?php echo esc_attr( $preview && isset( $preview['total'] )
									/* translators: 1: return number, 2: amount with currency */
									? sprintf( __( 'Refund %2$s for return %1$s now?', 'returns-connector' ), isset( $return['rma'] ) ? (string) $return['rma'] : '', self::money_text( (string) $preview['total'], isset( $preview['currency'] ) ? (string) $preview['currency'] : $currency ) )
									: __( 'Refund this return now?', 'returns-connector' ) ); ?>"><?php esc_html_e( 'Refund', 'returns-connector' ); ?></button>
						<?php endif; ?>
						<?php if ( ! empty( $return['can_record_manual'] ) ) : ?>
							<button type="button" class="button rc-refund" data-manual="1" data-return="<?php echo esc_attr( (string) absint( $return['id'] ) ); ?>"
								data-confirm="<?php esc_attr_e( 'Record this refund as paid back by hand (bank transfer, cash)? No money is sent through the payment gateway.', 'returns-connector' ); ?>"><?php esc_html_e( 'Record manual refund', 'returns-connector' ); ?></button>
						<?php endif; ?>
						<p class="rc-refund-result" role="status" aria-live="polite"></p>
					</td>
				</tr>
			<?php endforeach; ?>
			</tbody>
		</table>
		<?php
	}

	/**
	 * admin-ajax rc_refund: order_id, return_id, _ajax_nonce. Answers
	 * {success: true, data: {message}} or {success: false, data: {message}}. The connector answers
	 * POST /woocommerce/plugin/refund with {state: pending|succeeded|failed|unknown, amount,
	 * currency, error, platform_refund_id}, or 4xx {error}.
	 */
	public static function ajax_refund() {
		$order_id  = isset( $_POST['order_id'] ) ? absint( wp_unslash( $_POST['order_id'] ) ) : 0;
		$return_id = isset( $_POST['return_id'] ) ? absint( wp_unslash( $_POST['return_id'] ) ) : 0;
		if ( ! current_user_can( 'edit_shop_orders' ) ) {
			wp_send_json_error( array( 'message' => __( 'You are not allowed to refund orders.', 'returns-connector' ) ), 403 );
		}
		if ( ! check_ajax_referer( self::AJAX_ACTION . '_' . $order_id, false, false ) ) {
			wp_send_json_error( array( 'message' => __( 'The page has expired. Reload it and try again.', 'returns-connector' ) ), 403 );
		}
		$order = $order_id ? wc_get_order( $order_id ) : false;
		if ( ! $order instanceof WC_Order || ! $return_id ) {
			wp_send_json_error( array( 'message' => __( 'Unknown order or return.', 'returns-connector' ) ), 400 );
		}

		$manual = isset( $_POST['manual'] ) && '1' === sanitize_text_field( wp_unslash( $_POST['manual'] ) );
		$answer = RC_Connector_Client::from_settings()->refund( $return_id, $manual );
		if ( is_wp_error( $answer ) ) {
			// The connector's reason (e.g. "not refundable in this state") verbatim.
			wp_send_json_error( array( 'message' => $answer->get_error_message() ) );
		}
		$state = isset( $answer['state'] ) ? (string) $answer['state'] : '';
		if ( 'failed' === $state ) {
			// WooCommerce's or the gateway's refusal, verbatim; the return stays unrefunded.
			wp_send_json_error( array( 'message' => ! empty( $answer['error'] ) ? (string) $answer['error'] : __( 'The refund was refused.', 'returns-connector' ) ) );
		}
		wp_send_json_success( array( 'message' => self::refund_message( $answer, $order->get_currency() ) ) );
	}

	/**
	 * What the merchant reads after the connector accepted the refund request.
	 *
	 * @param array  $answer   {state, amount, currency, error, platform_refund_id}.
	 * @param string $currency The order's currency (when the answer has none).
	 * @return string
	 */
	private static function refund_message( $answer, $currency ) {
		$money = self::money_text( isset( $answer['amount'] ) ? (string) $answer['amount'] : '0', ! empty( $answer['currency'] ) ? (string) $answer['currency'] : $currency );
		if ( isset( $answer['state'] ) && 'succeeded' === $answer['state'] ) {
			/* translators: %s: amount with currency */
			return sprintf( __( 'Refunded %s.', 'returns-connector' ), $money );
		}
		/* translators: %s: amount with currency */
		return sprintf( __( 'Refund of %s requested; it is being processed. Reload the page in a moment to see it.', 'returns-connector' ), $money );
	}
}
