/** spec §10.4: two devices; device 1 is a snapshot of device 0 taken at time 1. The body after the superblock line. */
export const SPEC_EXAMPLE_DEVICES = `  <device dev_id="0" mapped_blocks="111" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="100" time="0"/>
    <single_mapping origin_block="200" data_block="150" time="0"/>
    <range_mapping origin_begin="300" data_begin="160" length="10" time="1"/>
  </device>
  <device dev_id="1" mapped_blocks="101" transaction="1" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="50" time="0"/>
    <single_mapping origin_block="50" data_block="200" time="1"/>
    <range_mapping origin_begin="51" data_begin="51" length="49" time="0"/>
    <single_mapping origin_block="200" data_block="150" time="0"/>
  </device>
</superblock>
`;
