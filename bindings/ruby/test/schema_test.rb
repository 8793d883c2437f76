# frozen_string_literal: true

# The binding against docs/vmpool.schema.json, the JSON Schema generated from the C ABI's wire
# types (tests/it/schema.rs checks the file against the types and the header): every key an entry
# point accepts is a keyword of the matching method. No guest, no store.
require "minitest/autorun"
require "json"
require "set"
require "vmpool"

class VmpoolSchemaTest < Minitest::Test
  SCHEMA = File.expand_path("../../../docs/vmpool.schema.json", __dir__)
  Store = Vmpool::Store

  # The keyword parameters of Store#+name+ (image: stands for the key image_uuid).
  def self.keywords(name, but: [])
    Store.instance_method(name).parameters.filter_map { |kind, n| n if %i[key keyreq].include?(kind) }
         .map { |n| n == :image ? :image_uuid : n } - but
  end

  # entry point -> the keys the binding sends for its JSON argument.
  INPUTS = {
    "vmpool_image_import" => -> { Store::IMPORT_KEYS },
    "vmpool_vm_create" => -> { keywords(:create_vm) },
    "vmpool_vm_start" => -> { keywords(:start_vm) },
    "vmpool_vm_update" => -> { Store::VM_UPDATE_KEYS },
    "vmpool_pool_create" => -> { keywords(:create_pool) + Store::POOL_CREATE_KEYS },
    "vmpool_pool_update" => -> { Store::POOL_UPDATE_KEYS },
    "vmpool_pool_acquire" => -> { keywords(:acquire, but: [:owner]) },
    "vmpool_pool_refill" => -> { keywords(:refill) }
  }.freeze

  def setup
    skip "#{SCHEMA} is not there (make schema writes it)" unless File.exist?(SCHEMA)
    @doc = JSON.parse(File.read(SCHEMA))
  end

  # The property names of schema +s+, following an array to its items and a $ref into $defs.
  def keys(s)
    s = s["items"] if s["type"] == "array"
    s = @doc["$defs"].fetch(s["$ref"].split("/").last) if s["$ref"]
    s.fetch("properties").keys.map(&:to_sym).to_set
  end

  def test_every_input_of_the_schema_is_covered
    with_input = @doc["entry_points"].select { |_, p| p.key?("input") }.keys
    assert_equal INPUTS.keys.sort, with_input.sort, "an entry point with a JSON argument the binding does not know"
  end

  def test_the_binding_sends_exactly_the_keys_the_library_accepts
    INPUTS.each do |name, binding_keys|
      assert_equal keys(@doc["entry_points"].fetch(name).fetch("input")), binding_keys.call.to_set, name
    end
  end
end
